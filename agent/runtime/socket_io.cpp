#include <agent/runtime/socket_io.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <poll.h>

namespace agent::runtime {

namespace {

// Rounded up: a wait that times out ends at the deadline, not just before it, so a
// caller that asks `SocketClock::now() >= deadline` afterwards learns it was the time.
int remaining_ms(SocketClock::time_point deadline) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - SocketClock::now());
    return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

} // namespace

bool wait_for(int fd, short events, SocketClock::time_point deadline) {
    for (;;) {
        pollfd p{fd, events, 0};
        const int ready = ::poll(&p, 1, remaining_ms(deadline));
        if (ready > 0)
            return true;
        if (ready == 0 || errno != EINTR)
            return false;
    }
}

std::string connect_error(int fd, SocketClock::time_point deadline, const sockaddr* addr,
                          socklen_t length) {
    if (::connect(fd, addr, length) == 0)
        return {};
    if (errno != EINPROGRESS)
        return std::strerror(errno);
    if (!wait_for(fd, POLLOUT, deadline))
        return "connect timed out";
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    return err == 0 ? std::string() : std::strerror(err);
}

bool send_all(int fd, std::string_view data, SocketClock::time_point deadline) {
    while (!data.empty()) {
        const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n > 0) {
            data.remove_prefix(static_cast<std::size_t>(n));
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return false;
        } else if (!wait_for(fd, POLLOUT, deadline)) {
            return false;
        }
    }
    return true;
}

} // namespace agent::runtime
