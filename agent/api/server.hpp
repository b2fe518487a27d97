#pragma once
// The agent's HTTP server: a listening socket (TCP, or unix for local users and
// SSH). On TCP a front door (one thread, asynchronous I/O) accepts, completes
// TLS handshakes and reads request heads under a total deadline, so that a
// client who sends slowly costs a socket, not a thread; a request whose head
// has arrived is served on a thread of its own (handlers block, streams last),
// from one budget for token holders and a small one for everyone else. On the
// unix socket, whose file permissions already keep strangers out, each
// connection has its thread from the start. Beast and Asio stay in the .cpp
// files. docs/security.md ("Who can reach what") gives the figures.

#include <agent/api/connection.hpp>
#include <agent/api/listen.hpp>
#include <agent/api/router.hpp>
#include <common/result.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>

namespace agent::api {

// What the TCP front door holds at most. Past a limit, the oldest waiting
// connection is closed (pending, idle) or the new request gets 503 (workers).
struct ServerLimits {
    // Connections whose request head has not fully arrived and that have not
    // yet shown a valid token: anyone's. The oldest goes first, so a flood of
    // slow clients cycles through these while a prompt client gets in.
    std::size_t max_pending = 1024;
    // Of those, from one source address (its oldest goes first).
    std::size_t max_pending_per_address = 256;
    // Keep-alive connections of token holders between requests.
    std::size_t max_idle_trusted = 256;
    // Requests being served (threads) for token holders, streams included.
    std::size_t max_workers = 256;
    // Requests being served without a valid token (refusals, open routes).
    std::size_t max_anonymous_workers = 32;
};

// The thread budget on the unix socket: open connections served at once;
// past it a client gets 503 at once.
inline constexpr std::size_t k_max_connections = 256;

class Server {
  public:
    Server(const Router& router, ConnectionOptions options, ServerLimits limits = {});
    // Only after wait_idle() returned true: connection threads use the server.
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds and listens (ErrorKind::io when the address is in use or not ours).
    common::Status listen(const ListenAddress& address);
    // Serves every connection over TLS with `certificate` (before run()).
    void use_tls(std::shared_ptr<ApiCertificate> certificate);
    // Or listens on a unix socket (see listen_unix in unix_socket.hpp); each
    // request then names the connecting user (Request::peer). The file is
    // removed by stop().
    common::Status listen_unix(const std::filesystem::path& path);
    // The bound port (useful with port 0).
    unsigned short port() const;
    // Accepts and serves connections until stop() (runs the front door on TCP).
    void run();
    // From any thread: stops accepting and shuts down every open connection.
    void stop();
    // Waits until every connection thread has finished; false on timeout.
    bool wait_idle(std::chrono::milliseconds timeout);

    // For tests and the log: what the front door holds now.
    struct Counts {
        std::size_t pending = 0, idle_trusted = 0, workers = 0, anonymous_workers = 0;
        std::uint64_t evicted = 0, timed_out = 0, busy = 0;
    };
    Counts counts() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

} // namespace agent::api
