#include <agent/proxy/waker.hpp>

#include <common/log.hpp>

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace agent::proxy {

Waker::Waker(std::filesystem::path socket) : m_socket(std::move(socket)) {
    m_fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
}

Waker::~Waker() {
    if (m_fd >= 0)
        ::close(m_fd);
}

void Waker::wake(const std::string& app) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(m_mutex);
    auto& sent = m_sent[app];
    if (sent.time_since_epoch().count() != 0 && now - sent < k_again)
        return;
    sent = now;
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const std::string path = m_socket.string();
    int error = 0;
    if (m_fd < 0)
        error = EBADF;
    else if (path.size() >= sizeof(address.sun_path))
        error = ENAMETOOLONG;
    else {
        std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
        if (::sendto(m_fd, app.data(), app.size(), MSG_DONTWAIT,
                     reinterpret_cast<const sockaddr*>(&address), sizeof(address)) < 0)
            error = errno;
    }
    if (error != 0 && now - m_logged > std::chrono::minutes(1)) {
        m_logged = now;
        common::log_warn("cannot ask the agent to start " + app + " (" + path +
                         "): " + std::strerror(error) +
                         "; its requests wait and are answered 503 when the wait ends");
    }
}

} // namespace agent::proxy
