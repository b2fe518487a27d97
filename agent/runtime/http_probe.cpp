#include <agent/runtime/http_probe.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace agent::runtime {

namespace {

using Clock = std::chrono::steady_clock;

class Socket {
  public:
    Socket() : m_fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) {}
    ~Socket() {
        if (m_fd >= 0)
            close(m_fd);
    }
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    int fd() const { return m_fd; }

  private:
    int m_fd;
};

int remaining_ms(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits for `events` on fd; false on timeout.
bool wait_for(int fd, short events, Clock::time_point deadline) {
    pollfd p{fd, events, 0};
    return poll(&p, 1, remaining_ms(deadline)) > 0;
}

std::string connect_error(int fd, Clock::time_point deadline, const sockaddr_in& addr) {
    if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0)
        return {};
    if (errno != EINPROGRESS)
        return std::strerror(errno);
    if (!wait_for(fd, POLLOUT, deadline))
        return "connect timed out";
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    return err == 0 ? std::string() : std::strerror(err);
}

bool send_all(int fd, const std::string& data, Clock::time_point deadline) {
    std::size_t sent = 0;
    while (sent < data.size()) {
        ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return false;
        } else if (!wait_for(fd, POLLOUT, deadline)) {
            return false;
        }
    }
    return true;
}

// Reads until the status line is complete, the peer closes or the deadline.
std::string read_status_line(int fd, Clock::time_point deadline) {
    std::string data;
    char buffer[512];
    while (data.find('\n') == std::string::npos && data.size() < 4096) {
        if (!wait_for(fd, POLLIN, deadline))
            break;
        ssize_t n = recv(fd, buffer, sizeof buffer, 0);
        if (n > 0)
            data.append(buffer, static_cast<std::size_t>(n));
        else if (n == 0 || (errno != EAGAIN && errno != EINTR))
            break;
    }
    return data.substr(0, data.find('\r'));
}

ProbeResult parse_status(const std::string& line) {
    // "HTTP/1.1 200 OK"
    if (line.rfind("HTTP/", 0) != 0 || line.size() < 12 || line[8] != ' ')
        return {0, line.empty() ? "no HTTP answer" : "not an HTTP answer"};
    int status = 0;
    for (int i = 9; i < 12; ++i) {
        if (line[i] < '0' || line[i] > '9')
            return {0, "not an HTTP answer"};
        status = status * 10 + (line[i] - '0');
    }
    return {status, "HTTP " + std::to_string(status)};
}

} // namespace

ProbeResult http_probe(int port, const std::string& path, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    Socket sock;
    if (sock.fd() < 0)
        return {0, std::string("socket: ") + std::strerror(errno)};
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (auto error = connect_error(sock.fd(), deadline, addr); !error.empty())
        return {0, error};
    std::string request = "GET " + (path.empty() ? std::string("/") : path) +
                          " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                          "\r\nUser-Agent: deploy-agent-health\r\nConnection: close\r\n\r\n";
    if (!send_all(sock.fd(), request, deadline))
        return {0, "cannot send the request"};
    return parse_status(read_status_line(sock.fd(), deadline));
}

} // namespace agent::runtime
