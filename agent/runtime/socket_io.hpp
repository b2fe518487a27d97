#pragma once
// Blocking-with-a-deadline I/O on a non-blocking socket: what the health probe
// (http_probe.cpp) and a log drain's connection (logs/drain.cpp) both do.

#include <common/result.hpp>

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <sys/socket.h>

namespace agent::runtime {

using SocketClock = std::chrono::steady_clock;

// Waits for `events` (POLLIN, POLLOUT) on fd; false when the deadline passed first.
bool wait_for(int fd, short events, SocketClock::time_point deadline);
// Connects fd (non-blocking) to `addr` by the deadline: "" once connected, else why
// ("Connection refused", "connect timed out").
std::string connect_error(int fd, SocketClock::time_point deadline, const sockaddr* addr,
                          socklen_t length);
// Sends all of `data` by the deadline (MSG_NOSIGNAL); false on an error or the deadline.
bool send_all(int fd, std::string_view data, SocketClock::time_point deadline);
// A unix datagram socket bound at `path` (a stale one replaced, its folder made),
// writable by this user only: where deploy-proxy sends the agent one-line messages
// (proxy/wake.sock, proxy/certificate.sock). The descriptor, close-on-exec.
common::Result<int> bind_unix_datagram(const std::filesystem::path& path);

} // namespace agent::runtime
