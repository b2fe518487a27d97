#pragma once
// "HOST:PORT" parsing: the agent's and the proxy's --listen, route upstreams.

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

} // namespace common
