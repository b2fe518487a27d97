#pragma once
// Whether anything still talks to a local TCP port, read from /proc/net/tcp
// and /proc/net/tcp6: used to end a drain as soon as the replaced release has
// no request left, instead of always waiting deploy.drain.

#include <cstdint>
#include <string_view>

namespace agent::runtime {

struct PortActivity {
    int connections = 0; // ESTABLISHED or SYN_RECV with this local port
    int queued = 0;      // accepted by the kernel, not yet by the app (listen backlog)
    bool idle() const { return connections == 0 && queued == 0; }
};

// The activity of `port` in one /proc/net/tcp-format table.
PortActivity port_activity(std::string_view table, std::uint16_t port);
// Both tables of this network namespace (missing files count as empty).
PortActivity port_activity(std::uint16_t port);

} // namespace agent::runtime
