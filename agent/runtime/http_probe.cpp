#include <agent/runtime/http_probe.hpp>
#include <agent/runtime/socket_io.hpp>
#include <common/ascii.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace agent::runtime {

namespace {

using Clock = SocketClock;

class Socket {
  public:
    explicit Socket(int family = AF_INET)
        : m_fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) {}
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

// Reads until `done(data)`, `limit` bytes, the peer closes (`*closed` set) or the deadline.
template <typename Done>
std::string read_until(int fd, Clock::time_point deadline, std::size_t limit, Done done,
                       bool* closed = nullptr) {
    std::string data;
    char buffer[1024];
    while (!done(data) && data.size() < limit) {
        if (!wait_for(fd, POLLIN, deadline))
            break;
        ssize_t n = recv(fd, buffer, sizeof buffer, 0);
        if (n > 0) {
            data.append(buffer, static_cast<std::size_t>(n));
        } else if (n == 0) {
            if (closed)
                *closed = true;
            break;
        } else if (errno != EAGAIN && errno != EINTR) {
            break;
        }
    }
    return data;
}

// Reads until the status line is complete, the peer closes or the deadline.
std::string read_status_line(int fd, Clock::time_point deadline) {
    auto data = read_until(fd, deadline, 4096, [](const std::string& data) {
        return data.find('\n') != std::string::npos;
    });
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

// Reads until the end of the header (a blank line), the peer closes or the deadline.
std::string read_header(int fd, Clock::time_point deadline) {
    return read_until(fd, deadline, 65536, [](const std::string& data) {
        return data.find("\r\n\r\n") != std::string::npos;
    });
}

std::string trim(std::string_view text) {
    auto begin = text.find_first_not_of(" \t");
    auto end = text.find_last_not_of(" \t\r");
    return begin == std::string_view::npos ? std::string()
                                           : std::string(text.substr(begin, end - begin + 1));
}

// The status line and the fields of `header` (ending "\r\n\r\n" or not) into `answer`.
void parse_header(const std::string& header, HttpAnswer& answer) {
    auto line_end = header.find("\r\n");
    static_cast<ProbeResult&>(answer) = parse_status(header.substr(0, line_end));
    if (answer.status == 0 || line_end == std::string::npos)
        return;
    for (std::size_t at = line_end + 2; at < header.size();) {
        auto end = header.find("\r\n", at);
        if (end == std::string::npos || end == at)
            break;
        std::string_view line(header.data() + at, end - at);
        if (auto colon = line.find(':'); colon != std::string_view::npos)
            answer.fields.emplace_back(trim(line.substr(0, colon)), trim(line.substr(colon + 1)));
        at = end + 2;
    }
}

constexpr std::size_t k_max_socket_answer = 4 * 1024 * 1024; // an inspect answer is a few KiB

} // namespace

std::optional<std::string> HttpAnswer::field(std::string_view name) const {
    for (const auto& [key, value] : fields)
        if (common::ascii_iequals(key, name))
            return value;
    return std::nullopt;
}

HttpAnswer http_get(const HttpGet& request, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    HttpAnswer answer;
    sockaddr_storage storage{};
    socklen_t length = 0;
    if (request.address.find(':') != std::string::npos) {
        auto* a6 = reinterpret_cast<sockaddr_in6*>(&storage);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(static_cast<std::uint16_t>(request.port));
        if (inet_pton(AF_INET6, request.address.c_str(), &a6->sin6_addr) != 1)
            return {{0, "not an IP address: " + request.address}, {}};
        length = sizeof *a6;
    } else {
        auto* a4 = reinterpret_cast<sockaddr_in*>(&storage);
        a4->sin_family = AF_INET;
        a4->sin_port = htons(static_cast<std::uint16_t>(request.port));
        if (inet_pton(AF_INET, request.address.c_str(), &a4->sin_addr) != 1)
            return {{0, "not an IP address: " + request.address}, {}};
        length = sizeof *a4;
    }
    Socket sock(storage.ss_family);
    if (sock.fd() < 0)
        return {{0, std::string("socket: ") + std::strerror(errno)}, {}};
    if (auto error =
            connect_error(sock.fd(), deadline, reinterpret_cast<const sockaddr*>(&storage), length);
        !error.empty())
        return {{0, error}, {}};
    std::string text = "GET " + (request.path.empty() ? std::string("/") : request.path) +
                       " HTTP/1.1\r\nHost: " +
                       (request.host.empty() ? request.address + ":" + std::to_string(request.port)
                                             : request.host) +
                       "\r\nUser-Agent: deploy-agent\r\nConnection: close\r\n";
    for (const auto& [name, value] : request.fields)
        text += name + ": " + value + "\r\n";
    text += "\r\n";
    if (!send_all(sock.fd(), text, deadline))
        return {{0, "cannot send the request"}, {}};
    const std::string header = read_header(sock.fd(), deadline);
    if (header.empty() && Clock::now() >= deadline)
        return {{0, "no answer within " + std::to_string(timeout.count()) + "ms"}, {}};
    parse_header(header, answer);
    return answer;
}

common::Result<SocketAnswer> unix_http_get(const std::string& path, const std::string& target,
                                           std::chrono::milliseconds timeout) {
    using common::ErrorKind;
    using common::make_error;
    const auto deadline = Clock::now() + timeout;
    sockaddr_un address{};
    if (path.empty() || path.size() >= sizeof address.sun_path)
        return make_error(ErrorKind::io, "not a unix socket path: \"" + path + "\"");
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    Socket sock(AF_UNIX);
    if (sock.fd() < 0)
        return make_error(ErrorKind::io, std::string("socket: ") + std::strerror(errno));
    if (auto error = connect_error(sock.fd(), deadline, reinterpret_cast<const sockaddr*>(&address),
                                   sizeof address);
        !error.empty())
        return make_error(ErrorKind::io, "cannot connect to " + path + ": " + error);
    if (!send_all(sock.fd(),
                  "GET " + target + " HTTP/1.0\r\nHost: docker\r\nUser-Agent: deploy-agent\r\n\r\n",
                  deadline))
        return make_error(ErrorKind::io, path + " took no request within the time allowed");
    bool closed = false; // HTTP/1.0: the end of the answer
    const std::string text = read_until(
        sock.fd(), deadline, k_max_socket_answer + 1, [](const std::string&) { return false; },
        &closed);
    if (text.size() > k_max_socket_answer)
        return make_error(ErrorKind::io, path + " answered more than 4 MiB");
    if (!closed)
        return make_error(ErrorKind::io,
                          Clock::now() >= deadline
                              ? path + " did not answer within the time allowed"
                              : "cannot read from " + path + ": " + std::strerror(errno));
    const auto head_end = text.find("\r\n\r\n");
    HttpAnswer head;
    if (head_end != std::string::npos)
        parse_header(text.substr(0, head_end + 2), head);
    if (head.status == 0)
        return make_error(ErrorKind::io, path + " did not answer HTTP");
    if (auto encoding = head.field("Transfer-Encoding");
        encoding && encoding->find("chunked") != std::string::npos)
        return make_error(ErrorKind::io, path + " answered in chunks to an HTTP/1.0 request");
    return SocketAnswer{head.status, text.substr(head_end + 4)};
}

ProbeResult http_probe(int port, const std::string& path, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    Socket sock;
    if (sock.fd() < 0)
        return {0, std::string("socket: ") + std::strerror(errno)};
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (auto error = connect_error(sock.fd(), deadline, reinterpret_cast<const sockaddr*>(&addr),
                                   sizeof addr);
        !error.empty())
        return {0, error};
    std::string request = "GET " + (path.empty() ? std::string("/") : path) +
                          " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                          "\r\nUser-Agent: deploy-agent-health\r\nConnection: close\r\n\r\n";
    if (!send_all(sock.fd(), request, deadline))
        return {0, "cannot send the request"};
    return parse_status(read_status_line(sock.fd(), deadline));
}

} // namespace agent::runtime
