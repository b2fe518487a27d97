#include <agent/api/connection_impl.hpp>
#include <agent/api/server.hpp>
#include <agent/api/tls.hpp>
#include <agent/api/unix_socket.hpp>
#include <common/address.hpp>
#include <common/log.hpp>
#include <common/version.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/read.hpp>
#include <fmt/format.h>

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <netinet/in.h>
#include <set>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace agent::api {

namespace net = boost::asio;
namespace ssl = net::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// The answer when a budget is spent: a plain 503, then the connection closes.
const std::string& busy_answer() {
    static const std::string k_body =
        R"({"error":{"code":"busy","message":"too many open connections to the agent"}})"
        "\n";
    static const std::string k_answer =
        fmt::format("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    "Retry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
                    k_body.size(), k_body);
    return k_answer;
}

// True at most once a minute for each `last` (the time of the last true, in
// seconds since the epoch), also while the event keeps coming: a warning
// about a flood is logged once a minute for as long as it lasts.
bool once_a_minute(std::atomic<std::int64_t>& last) {
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    auto seen = last.load();
    return now - seen >= 60 && last.compare_exchange_strong(seen, now);
}

// The client's IP address as text ("" when it cannot be read).
std::string peer_address(int fd) {
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

} // namespace

struct Session;
using SessionPtr = std::shared_ptr<Session>;

// Where a connection waits for its next request head.
enum class Waiting { none, pending, idle_trusted };

// One TCP connection, from accept to close. The front door's thread owns it
// while a head is awaited; a worker thread while a request is served.
struct Session {
    Session(net::io_context& context, tcp::socket s, std::chrono::milliseconds idle)
        : socket(std::move(s)), layer(socket, idle), timer(context) {}

    template <class F> void with_stream(F&& f) {
        if (tls)
            f(*tls);
        else
            f(layer);
    }
    void close() {
        boost::system::error_code ec;
        timer.cancel();
        socket.close(ec);
    }

    tcp::socket socket;
    DeadlineSocket layer;
    std::shared_ptr<const proxy::TlsCertificates> certificates; // TLS: the pair in use
    std::optional<ssl::context> tls_context;
    std::optional<TlsStream> tls;
    bool handshaken = false;
    beast::flat_buffer buffer;
    std::optional<HeadParser> header;
    net::steady_timer timer;
    Peer peer;
    bool trusted = false; // a request on it named a verified token
    Waiting waiting = Waiting::none;
    std::list<Session*>::iterator where; // in the list `waiting` names
};

// Connections closing while their client may still send an unread body:
// drained by the front door for at most this long each, this many at once.
constexpr auto k_drain_time = std::chrono::seconds(2);
constexpr auto k_drain_pause = std::chrono::milliseconds(200);
constexpr std::size_t k_max_draining = 256;
constexpr std::uint64_t k_max_drained = 64u << 20;

struct Server::Impl {
    Impl(const Router& r, ConnectionOptions o, ServerLimits l)
        : router(r), options(std::move(o)), limits(l), acceptor(context) {}
    ~Impl() {
        if (unix_fd >= 0)
            ::close(unix_fd);
    }

    // The unix socket: a thread per connection.
    void serve_unix(int fd);
    void run_unix();
    int listen_fd() { return unix_fd >= 0 ? unix_fd : acceptor.native_handle(); }
    void remove_socket_file();

    // The TCP front door (all on the thread that runs `context`).
    void accept();
    void on_accept(tcp::socket socket);
    void await_head(const SessionPtr& s);
    void read_head(const SessionPtr& s);
    void on_head(const SessionPtr& s, beast::error_code ec);
    void hand_over(const SessionPtr& s, bool trusted);
    void refuse_busy(const SessionPtr& s, bool trusted);
    // What a drain has read so far, and until when it may read.
    struct Drained {
        Clock::time_point until = Clock::now() + k_drain_time;
        std::uint64_t bytes = 0;
        char scratch[16384];
    };
    void drain(const SessionPtr& s);
    void drain_more(const SessionPtr& s, const std::shared_ptr<Drained>& state);
    void enter(Session& s, Waiting where);
    void leave(Session& s);
    void evict_for(const std::string& address);
    void close_waiting();
    // On a worker thread, once its request is answered.
    void served(SessionPtr s, bool trusted, RequestOutcome outcome);

    const Router& router;
    ConnectionOptions options;
    ServerLimits limits;
    std::shared_ptr<ApiCertificate> tls; // use_tls()
    net::io_context context;
    tcp::acceptor acceptor;
    net::steady_timer accept_retry{context};
    int unix_fd = -1;                // listen_unix(): the listening socket
    std::filesystem::path unix_path; // and its file,
    struct stat unix_file {};        // which stop() removes if it is still ours
    std::atomic<bool> stopping{false};

    // Front door state: only its thread touches these.
    std::list<Session*> pending;      // oldest first
    std::list<Session*> idle_trusted; // oldest first
    std::map<std::string, std::size_t> pending_by_address;

    // Shared with worker threads and stop(), under `mutex`.
    mutable std::mutex mutex;
    std::condition_variable idle;
    std::set<int> connections; // sockets a thread serves, shut down by stop()
    std::size_t workers = 0, anonymous_workers = 0;
    std::atomic<std::uint64_t> evicted{0}, timed_out{0}, busy{0};
    std::atomic<std::size_t> pending_count{0}, idle_trusted_count{0};
    std::size_t draining = 0; // front door only
};

// --- the TCP front door ---------------------------------------------------

void Server::Impl::accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
        if (stopping || ec == net::error::operation_aborted)
            return;
        if (ec == net::error::no_descriptors || ec.value() == ENFILE) {
            // Out of file descriptors: make room by letting the oldest waiting
            // client go, and try again shortly.
            static std::atomic<std::int64_t> last_logged{0};
            if (once_a_minute(last_logged))
                common::log_warn(fmt::format("accept failed: {}; closing the oldest waiting "
                                             "connection (raise LimitNOFILE)",
                                             ec.message()));
            if (!pending.empty()) {
                auto* oldest = pending.front();
                leave(*oldest);
                oldest->close();
                ++evicted;
            }
            accept_retry.expires_after(std::chrono::milliseconds(50));
            accept_retry.async_wait([this](boost::system::error_code waited) {
                if (!waited)
                    accept();
            });
            return;
        }
        if (!ec)
            on_accept(std::move(socket));
        accept();
    });
}

void Server::Impl::on_accept(tcp::socket socket) {
    auto s = std::make_shared<Session>(context, std::move(socket), options.idle_timeout);
    s->peer.address = peer_address(s->socket.native_handle());
    // Each write goes out at once: an answer's head and its body, or an event stream's head
    // and first events, are separate writes, and with Nagle's algorithm the second waited
    // for the client's delayed acknowledgement of the first (40 ms on Linux).
    boost::system::error_code nodelay;
    s->socket.set_option(tcp::no_delay(true), nodelay);
    if (tls) {
        // The certificates in use now; a renewal applies to the next connection.
        s->certificates = tls->current();
        SSL_CTX* native = s->certificates->default_context();
        SSL_CTX_up_ref(native); // the Asio context frees its own reference
        s->tls_context.emplace(native);
        s->tls.emplace(DeadlineSocket(s->socket, options.idle_timeout), *s->tls_context);
        // An idle TLS connection keeps no 34 KiB of buffers.
        SSL_set_mode(s->tls->native_handle(), SSL_MODE_RELEASE_BUFFERS);
    }
    await_head(s);
}

// Waits for the next request head: at once for a new connection or a client
// without a token (the head deadline runs from now), after the first byte for
// a token holder's keep-alive connection (which may idle for idle_timeout).
void Server::Impl::await_head(const SessionPtr& s) {
    s->header.emplace();
    prepare_head_parser(*s->header);
    enter(*s, s->trusted ? Waiting::idle_trusted : Waiting::pending);
    const bool buffered =
        s->buffer.size() > 0 || (s->tls && SSL_pending(s->tls->native_handle()) > 0);
    if (!s->trusted || buffered) {
        read_head(s);
        return;
    }
    s->timer.expires_after(options.idle_timeout);
    s->timer.async_wait([this, s](boost::system::error_code ec) {
        if (ec)
            return;
        leave(*s);
        s->close();
    });
    s->socket.async_wait(tcp::socket::wait_read, [this, s](boost::system::error_code ec) {
        if (ec || stopping || s->waiting == Waiting::none) {
            leave(*s);
            s->close();
            return;
        }
        read_head(s);
    });
}

void Server::Impl::read_head(const SessionPtr& s) {
    // One deadline for the handshake and the whole head: a byte now and then
    // does not extend it.
    s->timer.expires_after(options.head_timeout);
    s->timer.async_wait([this, s](boost::system::error_code ec) {
        if (ec)
            return;
        ++timed_out;
        leave(*s);
        s->close();
    });
    const auto on_read = [this, s](beast::error_code ec, std::size_t) { on_head(s, ec); };
    if (s->tls && !s->handshaken) {
        s->tls->async_handshake(ssl::stream_base::server, [this, s, on_read](beast::error_code ec) {
            if (ec || s->waiting == Waiting::none) {
                on_head(s, ec ? ec : net::error::operation_aborted);
                return;
            }
            s->handshaken = true;
            http::async_read_header(*s->tls, s->buffer, *s->header, on_read);
        });
        return;
    }
    s->with_stream(
        [&](auto& stream) { http::async_read_header(stream, s->buffer, *s->header, on_read); });
}

void Server::Impl::on_head(const SessionPtr& s, beast::error_code ec) {
    const bool still_waiting = s->waiting != Waiting::none; // not evicted nor timed out
    leave(*s);
    s->timer.cancel();
    if (ec || stopping || !still_waiting) {
        s->close();
        return;
    }
    bool trusted = s->trusted || !options.gate;
    if (!trusted) {
        const auto authorization = s->header->get()[http::field::authorization];
        trusted = options.gate->authenticates(
            std::string_view(authorization.data(), authorization.size()));
    }
    hand_over(s, trusted);
}

void Server::Impl::hand_over(const SessionPtr& s, bool trusted) {
    const int fd = s->socket.native_handle();
    {
        std::lock_guard lock(mutex);
        auto& used = trusted ? workers : anonymous_workers;
        if (used >= (trusted ? limits.max_workers : limits.max_anonymous_workers)) {
            refuse_busy(s, trusted);
            return;
        }
        ++used;
        connections.insert(fd);
    }
    try {
        // An init-capture: a copy of the const reference `s` would be a const
        // member, which std::move would copy, leaving the thread a reference
        // to the session until it exits, after its count has dropped.
        std::thread([this, session = SessionPtr(s), trusted]() mutable {
            RequestOutcome outcome;
            session->with_stream([&](auto& stream) {
                outcome = serve_request(stream, session->buffer, *session->header, router, options,
                                        session->peer);
            });
            served(std::move(session), trusted, outcome); // keeps no reference behind
        }).detach();
    } catch (const std::system_error& error) { // no thread to be had
        {
            std::lock_guard lock(mutex);
            --(trusted ? workers : anonymous_workers);
            connections.erase(fd);
        }
        refuse_busy(s, trusted);
    }
}

// Past a budget: a plain 503 (over TLS too), then the connection closes.
void Server::Impl::refuse_busy(const SessionPtr& s, bool trusted) {
    ++busy;
    static std::atomic<std::int64_t> last_logged{0};
    if (once_a_minute(last_logged))
        common::log_warn(fmt::format(
            "API busy: 503 to a request from {}: all {} threads for requests {} are in use "
            "({} refused so far)",
            s->peer.address, trusted ? limits.max_workers : limits.max_anonymous_workers,
            trusted ? "of token holders" : "without a token", busy.load()));
    s->timer.expires_after(std::chrono::seconds(2));
    s->timer.async_wait([s](boost::system::error_code ec) {
        if (!ec)
            s->close();
    });
    s->with_stream([&](auto& stream) {
        net::async_write(stream, net::buffer(busy_answer()),
                         [s](beast::error_code, std::size_t) { s->close(); });
    });
}

// Everything that uses the server (the session, the context) is done before
// the worker's count drops: wait_idle() returning lets the server be destroyed.
void Server::Impl::served(SessionPtr s, bool trusted, RequestOutcome outcome) {
    s->trusted = s->trusted || outcome.authenticated;
    const bool keep = outcome.keep_open && !stopping;
    if (!keep && s->tls) {
        // Send our close_notify without waiting for the client's.
        beast::error_code ec;
        SSL_set_shutdown(s->tls->native_handle(), SSL_RECEIVED_SHUTDOWN);
        s->tls->shutdown(ec);
    }
    const bool drain_it = !keep && outcome.unread_body && !stopping;
    {
        std::lock_guard lock(mutex);
        // Out of the set before it is closed: stop() never shuts down a reused descriptor.
        connections.erase(s->socket.native_handle());
    }
    if (keep) // back to the front door for the next request
        net::post(context, [this, s] {
            if (stopping)
                s->close();
            else
                await_head(s);
        });
    else if (drain_it) // the thread is free at once; the front door drains
        net::post(context, [this, s] { drain(s); });
    else
        s->close();
    s.reset(); // the session goes with the front door's handler, or here
    std::lock_guard lock(mutex);
    --(trusted ? workers : anonymous_workers);
    idle.notify_all();
}

// Reads and drops what the client still sends of a body nobody read, until
// it stops (closes, or pauses k_drain_pause), for at most k_drain_time, so
// that closing does not reset the connection before the client has read the
// answer. Over TLS the dropped bytes are records nobody decrypts.
void Server::Impl::drain(const SessionPtr& s) {
    if (stopping || draining >= k_max_draining) {
        s->close();
        return;
    }
    ++draining;
    boost::system::error_code ec;
    s->socket.shutdown(tcp::socket::shutdown_send, ec);
    drain_more(s, std::make_shared<Drained>());
}

void Server::Impl::drain_more(const SessionPtr& s, const std::shared_ptr<Drained>& state) {
    s->timer.expires_at(std::min(state->until, Clock::now() + k_drain_pause));
    s->timer.async_wait([s](boost::system::error_code waited) {
        if (!waited)
            s->close();
    });
    s->socket.async_read_some(net::buffer(state->scratch),
                              [this, s, state](boost::system::error_code read, std::size_t n) {
                                  state->bytes += n;
                                  if (read || state->bytes > k_max_drained ||
                                      Clock::now() >= state->until) {
                                      s->close();
                                      --draining;
                                      return;
                                  }
                                  drain_more(s, state);
                              });
}

void Server::Impl::enter(Session& s, Waiting where) {
    if (where == Waiting::pending) {
        evict_for(s.peer.address);
        s.where = pending.insert(pending.end(), &s);
        ++pending_by_address[s.peer.address];
    } else {
        if (idle_trusted.size() >= limits.max_idle_trusted) {
            auto* oldest = idle_trusted.front();
            leave(*oldest);
            oldest->close();
            ++evicted;
        }
        s.where = idle_trusted.insert(idle_trusted.end(), &s);
    }
    s.waiting = where;
    pending_count = pending.size();
    idle_trusted_count = idle_trusted.size();
}

void Server::Impl::leave(Session& s) {
    if (s.waiting == Waiting::pending) {
        pending.erase(s.where);
        const auto it = pending_by_address.find(s.peer.address);
        if (it != pending_by_address.end() && --it->second == 0)
            pending_by_address.erase(it);
    } else if (s.waiting == Waiting::idle_trusted) {
        idle_trusted.erase(s.where);
    }
    s.waiting = Waiting::none;
    pending_count = pending.size();
    idle_trusted_count = idle_trusted.size();
}

// Makes room for one more waiting connection from `address`: past its share,
// its own oldest goes; past the total, the oldest of all.
void Server::Impl::evict_for(const std::string& address) {
    Session* victim = nullptr;
    const auto it = pending_by_address.find(address);
    if (it != pending_by_address.end() && it->second >= limits.max_pending_per_address) {
        for (auto* waiting : pending)
            if (waiting->peer.address == address) {
                victim = waiting;
                break;
            }
    } else if (pending.size() >= limits.max_pending) {
        victim = pending.front();
    }
    if (!victim)
        return;
    leave(*victim);
    victim->close();
    ++evicted;
}

void Server::Impl::close_waiting() {
    boost::system::error_code ec;
    acceptor.close(ec);
    accept_retry.cancel();
    for (auto& list : {&pending, &idle_trusted})
        while (!list->empty()) {
            auto* s = list->front();
            leave(*s);
            s->close();
        }
}

// --- the unix socket --------------------------------------------------------

// Past k_max_connections a client gets a plain 503 instead of a thread.
static void refuse_unix(int fd) {
    const auto& answer = busy_answer();
    [[maybe_unused]] auto sent =
        ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::close(fd);
}

void Server::Impl::serve_unix(int fd) {
    serve_connection(fd, router, options, unix_peer(fd));
    std::lock_guard lock(mutex);
    connections.erase(fd);
    ::close(fd); // under the lock: stop() never shuts down a reused descriptor
    idle.notify_all();
}

void Server::Impl::run_unix() {
    while (!stopping) {
        const int fd = ::accept4(unix_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (!stopping)
                common::log_error(fmt::format("accept failed: {}", std::strerror(errno)));
            if (errno == EMFILE || errno == ENFILE) {
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
                continue;
            }
            break;
        }
        std::lock_guard lock(mutex);
        if (connections.size() >= k_max_connections) {
            refuse_unix(fd);
            continue;
        }
        connections.insert(fd);
        if (stopping)
            ::shutdown(fd, SHUT_RDWR); // raced with stop()
        std::thread([this, fd] { serve_unix(fd); }).detach();
    }
}

// --- Server -----------------------------------------------------------------

Server::Server(const Router& router, ConnectionOptions options, ServerLimits limits)
    : m_impl(std::make_unique<Impl>(router, std::move(options), limits)) {}

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
    if (m_impl->unix_fd >= 0) {
        m_impl->run_unix();
        return;
    }
    m_impl->accept();
    m_impl->context.run();
}

void Server::stop() {
    m_impl->stopping = true;
    if (m_impl->unix_fd >= 0) {
        ::shutdown(m_impl->unix_fd, SHUT_RDWR); // wakes accept4()
        m_impl->remove_socket_file();
    } else {
        net::post(m_impl->context, [impl = m_impl.get()] { impl->close_waiting(); });
    }
    std::lock_guard lock(m_impl->mutex);
    for (int fd : m_impl->connections)
        ::shutdown(fd, SHUT_RDWR);
}

bool Server::wait_idle(std::chrono::milliseconds timeout) {
    std::unique_lock lock(m_impl->mutex);
    return m_impl->idle.wait_for(lock, timeout, [&] {
        return m_impl->connections.empty() && m_impl->workers == 0 &&
               m_impl->anonymous_workers == 0;
    });
}

Server::Counts Server::counts() const {
    Counts counts;
    counts.pending = m_impl->pending_count;
    counts.idle_trusted = m_impl->idle_trusted_count;
    counts.evicted = m_impl->evicted;
    counts.timed_out = m_impl->timed_out;
    counts.busy = m_impl->busy;
    std::lock_guard lock(m_impl->mutex);
    counts.workers = m_impl->workers;
    counts.anonymous_workers = m_impl->anonymous_workers;
    return counts;
}

} // namespace agent::api
