#pragma once
// Sizes and timeouts of the proxy, in one place.

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace agent::proxy {

constexpr std::size_t k_header_limit = 64 * 1024;
// deploy.toml [proxy] defaults, for a route whose "limits" leave one out.
constexpr std::uint64_t k_default_max_body = 100ull * 1024 * 1024;
constexpr auto k_websocket_idle = std::chrono::milliseconds(3600 * 1000);
constexpr std::size_t k_relay_chunk = 32 * 1024; // request and response bodies, per connection
// A body that does not come in one read: each of the two buffers it streams through (one is
// written upstream while the next piece is read into the other), and the most read from the
// socket at once (the read buffer grows to it). Only while such a body streams.
constexpr std::size_t k_body_chunk = 64 * 1024;
// A request answered before its body was read (413 ...): what is still read
// and discarded before the connection closes, so the client sees the answer.
constexpr std::size_t k_linger_bytes = 1024 * 1024;
constexpr auto k_linger_timeout = std::chrono::seconds(2);
constexpr std::size_t k_tunnel_chunk = 16 * 1024; // upgraded connections: per direction
// Idle keep-alive connections kept per upstream: as many as requests run at once to
// it (a pool smaller than the concurrency closes and reopens connections under load).
constexpr std::size_t k_max_idle_per_upstream = 1024;
// A pooled connection idle for this long is checked for a close from the upstream before
// it carries a request (session_forward.ipp); a younger one is not.
constexpr auto k_peek_idle = std::chrono::milliseconds(250);
// How often each worker closes the pooled connections idle past their age (upstream_pool.cpp).
constexpr auto k_pool_sweep_interval = std::chrono::seconds(1);

constexpr auto k_keep_alive_timeout = std::chrono::seconds(75); // client idle between requests
constexpr auto k_client_timeout = std::chrono::seconds(60);     // client read/write in a request
constexpr auto k_handshake_timeout = std::chrono::seconds(10);  // TLS, from accept
constexpr auto k_connect_timeout = std::chrono::milliseconds(5000);
constexpr auto k_upstream_timeout = std::chrono::milliseconds(60000); // 504 after this
constexpr auto k_drain_timeout = std::chrono::seconds(10);            // graceful SIGTERM
// SIGTERM: a keep-alive connection's next request is still served (with
// Connection: close) for this long; then idle ones are closed. Closing one
// can race a request the client is sending, which a client that does not
// retry (wrk, many scripts) counts as failed: long enough for a client
// starved of CPU for a second or two, as Envoy's default drain (5 s).
constexpr auto k_idle_grace = std::chrono::seconds(5);
constexpr auto k_poll_interval = std::chrono::milliseconds(250);

// On-demand TLS (--on-demand-tls): a handshake for a name no certificate
// covers waits this long at most for the agent's certificate, looking for it
// this often; past k_on_demand_max_held waiting connections on a worker, a
// new one handshakes at once (with the default certificate).
constexpr auto k_on_demand_hold = std::chrono::seconds(25);
constexpr auto k_on_demand_recheck = std::chrono::milliseconds(100);
constexpr std::size_t k_on_demand_max_held = 1024;

} // namespace agent::proxy
