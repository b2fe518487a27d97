#include <agent/api/server.hpp>
#include <agent/api/tls.hpp>
#include <agent/api/unix_socket.hpp>
#include <common/address.hpp>
#include <common/log.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <arpa/inet.h>
#include <mutex>
#include <netinet/in.h>
#include <set>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace agent::api {

namespace net = boost::asio;
using tcp = net::ip::tcp;

struct Server::Impl {
    Impl(const Router& r, ConnectionOptions o)
        : router(r), options(std::move(o)), acceptor(context) {}
    ~Impl() {
        if (unix_fd >= 0)
            ::close(unix_fd);
    }

    void serve(int fd);
    int listen_fd() { return unix_fd >= 0 ? unix_fd : acceptor.native_handle(); }
    void remove_socket_file();

    const Router& router;
    ConnectionOptions options;
    std::shared_ptr<ApiCertificate> tls; // use_tls()
    net::io_context context;
    tcp::acceptor acceptor;
    int unix_fd = -1;                // listen_unix(): the listening socket
    std::filesystem::path unix_path; // and its file,
    struct stat unix_file {};        // which stop() removes if it is still ours
    std::atomic<bool> stopping{false};
    std::mutex mutex;
    std::condition_variable idle;
    std::set<int> connections; // open sockets, shut down by stop()
};

// Past k_max_connections a client gets a plain 503 instead of a thread.
static void refuse_busy(int fd) {
    static const std::string k_body =
        R"({"error":{"code":"busy","message":"too many open connections to the agent"}})"
        "\n";
    static const std::string k_answer =
        fmt::format("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    "Connection: close\r\nContent-Length: {}\r\n\r\n{}",
                    k_body.size(), k_body);
    [[maybe_unused]] auto sent =
        ::send(fd, k_answer.data(), k_answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::close(fd);
}

// The client's IP address as text ("" when it cannot be read).
static std::string peer_address(int fd) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0)
        return {};
    char text[INET6_ADDRSTRLEN] = {};
    if (address.ss_family == AF_INET)
        ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&address)->sin_addr, text,
                    sizeof text);
    else if (address.ss_family == AF_INET6) {
        const auto& in6 = reinterpret_cast<sockaddr_in6*>(&address)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&in6)) // "::ffff:10.0.0.1" is 10.0.0.1
            ::inet_ntop(AF_INET, &in6.s6_addr[12], text, sizeof text);
        else
            ::inet_ntop(AF_INET6, &in6, text, sizeof text);
    }
    return text;
}

void Server::Impl::serve(int fd) {
    Peer peer = unix_fd >= 0 ? unix_peer(fd) : Peer{};
    if (unix_fd < 0)
        peer.address = peer_address(fd);
    if (tls)
        serve_tls_connection(fd, *tls, router, options, peer);
    else
        serve_connection(fd, router, options, peer);
    std::lock_guard lock(mutex);
    connections.erase(fd);
    ::close(fd); // under the lock: stop() never shuts down a reused descriptor
    idle.notify_all();
}

Server::Server(const Router& router, ConnectionOptions options)
    : m_impl(std::make_unique<Impl>(router, std::move(options))) {}

Server::~Server() = default;

common::Status Server::listen(const ListenAddress& address) {
    boost::system::error_code ec;
    const auto ip = net::ip::make_address(address.host, ec);
    if (ec)
        return common::make_error(
            common::ErrorKind::usage,
            fmt::format("invalid address {}: {}", address.host, ec.message()));
    const tcp::endpoint endpoint(ip, address.port);
    auto& acceptor = m_impl->acceptor;
    acceptor.open(endpoint.protocol(), ec);
    if (!ec)
        acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec)
        acceptor.bind(endpoint, ec);
    if (!ec)
        acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec)
        return common::make_error(
            common::ErrorKind::io,
            fmt::format("cannot listen on {}:{} for the API: {}", address.host, address.port,
                        ec.category() == boost::system::system_category()
                            ? common::listen_failure(ec.value(), "--listen or listen in agent.toml")
                            : ec.message()));
    return {};
}

void Server::use_tls(std::shared_ptr<ApiCertificate> certificate) {
    m_impl->tls = std::move(certificate);
}

common::Status Server::listen_unix(const std::filesystem::path& path) {
    auto fd = agent::api::listen_unix(path);
    if (!fd)
        return fd.error();
    m_impl->unix_fd = *fd;
    m_impl->unix_path = path;
    ::stat(path.c_str(), &m_impl->unix_file);
    return {};
}

// A newer agent may have replaced the file already: remove only our own.
void Server::Impl::remove_socket_file() {
    struct stat now {};
    if (unix_path.empty() || ::stat(unix_path.c_str(), &now) != 0)
        return;
    if (now.st_dev == unix_file.st_dev && now.st_ino == unix_file.st_ino)
        ::unlink(unix_path.c_str());
}

unsigned short Server::port() const {
    boost::system::error_code ec;
    return m_impl->acceptor.local_endpoint(ec).port();
}

void Server::run() {
    const int listen_fd = m_impl->listen_fd();
    while (!m_impl->stopping) {
        const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (!m_impl->stopping)
                common::log_error(fmt::format("accept failed: {}", std::strerror(errno)));
            if (errno == EMFILE || errno == ENFILE) {
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
                continue;
            }
            break;
        }
        std::lock_guard lock(m_impl->mutex);
        if (m_impl->connections.size() >= k_max_connections) {
            refuse_busy(fd);
            continue;
        }
        m_impl->connections.insert(fd);
        if (m_impl->stopping)
            ::shutdown(fd, SHUT_RDWR); // raced with stop()
        std::thread([impl = m_impl.get(), fd] { impl->serve(fd); }).detach();
    }
}

void Server::stop() {
    m_impl->stopping = true;
    ::shutdown(m_impl->listen_fd(), SHUT_RDWR); // wakes accept4()
    m_impl->remove_socket_file();
    std::lock_guard lock(m_impl->mutex);
    for (int fd : m_impl->connections)
        ::shutdown(fd, SHUT_RDWR);
}

bool Server::wait_idle(std::chrono::milliseconds timeout) {
    std::unique_lock lock(m_impl->mutex);
    return m_impl->idle.wait_for(lock, timeout, [&] { return m_impl->connections.empty(); });
}

} // namespace agent::api
