#pragma once
// The ports apps listen on ($PORT). They are picked from agent.toml's
// app_ports, a range kept apart from the kernel's ephemeral range
// (net.ipv4.ip_local_port_range): a port picked there can be taken as the
// local port of any outgoing connection between the pick and the app's
// listen(), and the app then fails with "Address already in use".

#include <common/result.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace agent::runtime {

struct PortRange {
    int low = 10000;
    int high = 19999;
    bool overlaps(const PortRange& other) const { return low <= other.high && other.low <= high; }
    std::string text() const; // "LOW-HIGH"
};

// "LOW-HIGH", 1024 <= LOW <= HIGH <= 65535 (ErrorKind::usage otherwise).
common::Result<PortRange> parse_port_range(std::string_view text);

// The two numbers of /proc/sys/net/ipv4/ip_local_port_range's text.
std::optional<PortRange> parse_ephemeral_range(std::string_view text);
// This machine's (nullopt when it cannot be read).
std::optional<PortRange> ephemeral_port_range();

// A port of `range` no socket holds (a bind on every address succeeds) and
// that this process has not handed out in the last minute, tried from a
// random place in the range.
common::Result<int> pick_free_port(const PortRange& range);
// The same in the default range (tests, tools).
common::Result<int> pick_free_port();

// Whether a socket other than ours listens on `port`, or holds it as its
// bound local port (a bind with SO_REUSEADDR fails: a closed connection's
// TIME_WAIT does not count).
bool port_taken(int port);

} // namespace agent::runtime
