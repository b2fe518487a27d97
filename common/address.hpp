#pragma once
// "HOST:PORT" parsing: the agent's and the proxy's --listen, route upstreams;
// which hosts are loopback (where plain HTTP is allowed).

#include <common/result.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace common {

struct HostPort {
    std::string host; // IP literal without brackets ("127.0.0.1", "::1"); "" means any
    std::uint16_t port = 0;
};

enum class EmptyHost { allowed, refused };

// Accepts "127.0.0.1:8080", "[::1]:8080" and, with EmptyHost::allowed, ":8080".
// The host must be an IP literal: the proxy never resolves names.
common::Result<HostPort> parse_host_port(std::string_view text,
                                         EmptyHost empty = EmptyHost::refused);

// 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z) and "localhost": the hosts plain
// HTTP may be spoken to, by deployctl and by the agent's API.
bool is_loopback_host(std::string_view host);

// The host of a URL ("scheme://[user@]host[:port][/...]"), IPv6 brackets removed; "" when
// the text has no "://". Nothing is resolved: "localhost.example.com" is that name.
std::string url_host(std::string_view url);

// Why an address cannot be listened on (`error` is the errno of bind or
// listen) and what to do about it; `setting` names where the address comes
// from ("--listen or listen in agent.toml").
std::string listen_failure(int error, std::string_view setting);

} // namespace common
