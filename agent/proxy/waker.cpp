#include <agent/proxy/waker.hpp>

#include <common/log.hpp>

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace agent::proxy {

Waker::Waker(std::filesystem::path socket, std::string ask, std::string meanwhile)
    : m_socket(std::move(socket)), m_ask(std::move(ask)), m_meanwhile(std::move(meanwhile)) {
    m_fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
}

Waker::~Waker() {
    if (m_fd >= 0)
        ::close(m_fd);
}

bool Waker::wake(const std::string& app) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(m_mutex);
    if (now - m_pruned > k_again) {
        m_pruned = now;
        std::erase_if(m_sent,
                      [&](const auto& entry) { return now - entry.second.when >= k_again; });
    }
    auto& sent = m_sent[app];
    if (sent.when.time_since_epoch().count() != 0 && now - sent.when < k_again)
        return sent.ok;
    sent.when = now;
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
        common::log_warn("cannot ask the agent to " + m_ask + " " + app + " (" + path +
                         "): " + std::strerror(error) + "; " + m_meanwhile);
    }
    sent.ok = error == 0;
    return sent.ok;
}

} // namespace agent::proxy
