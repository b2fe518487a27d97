#include <agent/runtime/socket_io.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <poll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

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

namespace agent::runtime {

common::Result<int> bind_unix_datagram(const std::filesystem::path& path) {
    using common::ErrorKind;
    using common::make_error;
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const std::string text = path.string();
    if (text.size() >= sizeof(address.sun_path))
        return make_error(ErrorKind::config,
                          "the socket path " + text + " is too long for a unix socket");
    std::memcpy(address.sun_path, text.c_str(), text.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return make_error(ErrorKind::io, std::string("socket: ") + std::strerror(errno));
    ::unlink(text.c_str());            // the one a previous run left
    const mode_t mask = ::umask(0077); // only this user (the proxy's) may write to it
    const int bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
    const int error = errno;
    ::umask(mask);
    if (bound != 0) {
        ::close(fd);
        return make_error(ErrorKind::io, "cannot listen on " + text + ": " + std::strerror(error));
    }
    return fd;
}

} // namespace agent::runtime
