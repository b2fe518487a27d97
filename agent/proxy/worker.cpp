#include <agent/proxy/limits.hpp>
#include <agent/proxy/session.hpp>
#include <agent/proxy/worker.hpp>
#include <common/log.hpp>

#include <boost/asio/detail/socket_option.hpp>
#include <fmt/format.h>

#include <sys/socket.h>

namespace agent::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Worker::Worker(asio::io_context& context)
    : m_context(context), m_acceptor(context.get_executor()), m_retry_timer(context),
      m_table(std::make_shared<const RouteTable>()), m_pool(k_max_idle_per_upstream) {}

common::Status Worker::listen(const tcp::endpoint& endpoint, ReusePort reuse) {
    boost::system::error_code ec;
    m_acceptor.open(endpoint.protocol(), ec);
    if (!ec) {
        m_acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    }
    if (!ec && reuse == ReusePort::yes) {
        using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
        m_acceptor.set_option(reuse_port(true), ec);
    }
    if (!ec) {
        m_acceptor.bind(endpoint, ec);
    }
    if (!ec) {
        m_acceptor.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
        return common::make_error(common::ErrorKind::io,
                                  fmt::format("cannot listen on {}:{}: {}",
                                              endpoint.address().to_string(), endpoint.port(),
                                              ec.message()));
    }
    return {};
}

common::Status Worker::adopt(int fd) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    int listening = 0;
    socklen_t size = sizeof listening;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
        ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || !listening) {
        return common::make_error(common::ErrorKind::io,
                                  fmt::format("--listen-fd {} is not a listening socket", fd));
    }
    boost::system::error_code ec;
    m_acceptor.assign(address.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
    if (ec) {
        return common::make_error(common::ErrorKind::io,
                                  fmt::format("cannot use --listen-fd {}: {}", fd, ec.message()));
    }
    return {};
}

tcp::endpoint Worker::local_endpoint() const {
    boost::system::error_code ec;
    return m_acceptor.local_endpoint(ec);
}

void Worker::set_table(std::shared_ptr<const RouteTable> table) {
    m_table = std::move(table);
    m_pool.retain_only(*m_table);
}

void Worker::accept() {
    m_acceptor.async_accept(
        [this](boost::system::error_code ec, Socket socket) { on_accept(ec, std::move(socket)); });
}

void Worker::on_accept(boost::system::error_code ec, Socket socket) {
    if (m_stopping) {
        return;
    }
    if (ec) {
        // EMFILE and friends: back off instead of spinning on the error.
        common::log_error(fmt::format("accept failed: {}", ec.message()));
        m_retry_timer.expires_after(std::chrono::milliseconds(100));
        m_retry_timer.async_wait([this](boost::system::error_code wait_ec) {
            if (!wait_ec && !m_stopping) {
                accept();
            }
        });
        return;
    }
    std::make_shared<Session>(std::move(socket), *this)->start();
    accept();
}

void Worker::stop(std::function<void()> on_drained) {
    m_stopping = true;
    m_on_drained = std::move(on_drained);
    boost::system::error_code ignored;
    m_acceptor.close(ignored);
    m_retry_timer.cancel();
    m_pool.clear();
    // close_if_idle() may destroy sessions, which erase themselves: copy first.
    std::vector<Session*> sessions(m_sessions.begin(), m_sessions.end());
    for (Session* session : sessions) {
        session->close_if_idle();
    }
    if (m_sessions.empty() && m_on_drained) {
        std::exchange(m_on_drained, nullptr)();
    }
}

void Worker::remove(Session* session) {
    m_sessions.erase(session);
    if (m_stopping && m_sessions.empty() && m_on_drained) {
        std::exchange(m_on_drained, nullptr)();
    }
}

} // namespace agent::proxy
