#include <agent/proxy/limits.hpp>
#include <agent/proxy/on_demand.hpp>
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
    : m_context(context), m_http(context.get_executor()), m_https(context.get_executor()),
      m_grace_timer(context), m_sweep_timer(context), m_table(std::make_shared<const RouteTable>()),
      m_pool(k_max_idle_per_upstream) {}

common::Status Worker::listen(Listener which, const tcp::endpoint& endpoint, ReusePort reuse) {
    auto& listener = acceptor(which);
    boost::system::error_code ec;
    listener.open(endpoint.protocol(), ec);
    if (!ec) {
        listener.set_option(tcp::acceptor::reuse_address(true), ec);
    }
    if (!ec && reuse == ReusePort::yes) {
        using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
        listener.set_option(reuse_port(true), ec);
    }
    if (!ec) {
        listener.bind(endpoint, ec);
    }
    if (!ec) {
        listener.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
        return common::make_error(common::ErrorKind::io,
                                  fmt::format("cannot listen on {}:{}: {}",
                                              endpoint.address().to_string(), endpoint.port(),
                                              ec.message()));
    }
    return {};
}

common::Status Worker::adopt(Listener which, int fd) {
    auto& listener = acceptor(which);
    const std::string_view flag = which == Listener::http ? "--listen-fd" : "--tls-listen-fd";
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    int listening = 0;
    socklen_t size = sizeof listening;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
        ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || !listening) {
        return common::make_error(common::ErrorKind::io,
                                  fmt::format("{} {} is not a listening socket", flag, fd));
    }
    boost::system::error_code ec;
    listener.assign(address.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
    if (ec) {
        return common::make_error(common::ErrorKind::io,
                                  fmt::format("cannot use {} {}: {}", flag, fd, ec.message()));
    }
    m_adopted[static_cast<int>(which)] = true;
    return {};
}

tcp::endpoint Worker::local_endpoint(Listener which) const {
    boost::system::error_code ec;
    return acceptor(which).local_endpoint(ec);
}

void Worker::start() {
    accept(Listener::http);
    if (m_https.is_open()) {
        accept(Listener::https);
    }
    sweep_pool();
}

void Worker::sweep_pool() {
    m_sweep_timer.expires_after(k_pool_sweep_interval);
    m_sweep_timer.async_wait([this](boost::system::error_code ec) {
        if (ec || m_stopping) {
            return;
        }
        m_pool.sweep();
        sweep_pool();
    });
}

void Worker::set_table(std::shared_ptr<const RouteTable> table) {
    m_table = std::move(table);
    m_pool.retain_only(*m_table);
    release_held();
}

void Worker::release_held() {
    // In arrival order; one still paused is held again (appended anew).
    auto held = std::exchange(m_held, {});
    for (auto& session : held) {
        session->resume();
    }
}

void Worker::unhold(SessionBase* session) {
    std::erase_if(m_held, [session](const auto& held) { return held.get() == session; });
}

void Worker::accept(Listener which) {
    accept_or_yield(which, 0);
}

void Worker::accept_or_yield(Listener which, unsigned yielded) {
    if (m_accept_share != nullptr && m_adopted[static_cast<int>(which)] &&
        yielded < k_accept_yield_steps && m_accept_share->should_yield(m_accept_index)) {
        auto timer = std::make_shared<boost::asio::steady_timer>(m_context);
        timer->expires_after(k_accept_yield_step);
        timer->async_wait([this, which, yielded, timer](boost::system::error_code ec) {
            if (!ec && !m_stopping) {
                accept_or_yield(which, yielded + 1);
            }
        });
        return;
    }
    acceptor(which).async_accept([this, which](boost::system::error_code ec, Socket socket) {
        on_accept(which, ec, std::move(socket));
    });
}

void Worker::on_accept(Listener which, boost::system::error_code ec, Socket socket) {
    if (m_stopping) {
        return;
    }
    if (ec) {
        // EMFILE and friends: back off instead of spinning on the error.
        common::log_error(fmt::format("accept failed: {}", ec.message()));
        // A timer per failure: a shared one would let a failure on the other
        // listener cancel this wait, and that listener would stop accepting.
        auto timer = std::make_shared<boost::asio::steady_timer>(m_context);
        timer->expires_after(std::chrono::milliseconds(100));
        timer->async_wait([this, which, timer](boost::system::error_code wait_ec) {
            if (!wait_ec && !m_stopping) {
                accept(which);
            }
        });
        return;
    }
    if (which == Listener::https && m_certificate_waker != nullptr) {
        std::make_shared<HandshakeGate>(std::move(socket), *this)->start();
    } else if (which == Listener::https) {
        std::make_shared<Session<TlsStream>>(std::move(socket), *this, m_tls)->start();
    } else {
        std::make_shared<Session<Stream>>(std::move(socket), *this, nullptr)->start();
    }
    accept(which);
}

void Worker::stop(std::function<void()> on_drained) {
    m_stopping = true;
    m_on_drained = std::move(on_drained);
    release_held(); // answered 503: no later table reaches a stopping worker
    boost::system::error_code ignored;
    m_http.close(ignored);
    m_https.close(ignored);
    m_pool.clear();
    m_sweep_timer.cancel();
    // A connection waiting for its next request may have one on the way:
    // closing it now would reset that request. For a moment its next request
    // is still served, with Connection: close; then idle ones are closed.
    m_grace_timer.expires_after(k_idle_grace);
    m_grace_timer.async_wait([this](boost::system::error_code ec) {
        if (ec) {
            return;
        }
        m_grace_over = true;
        // close_if_idle() may destroy sessions, which erase themselves: copy first.
        std::vector<SessionBase*> sessions(m_sessions.begin(), m_sessions.end());
        for (SessionBase* session : sessions) {
            session->close_if_idle();
        }
    });
    if (m_sessions.empty() && m_on_drained) {
        m_grace_timer.cancel();
        std::exchange(m_on_drained, nullptr)();
    }
}

void Worker::remove(SessionBase* session) {
    m_sessions.erase(session);
    publish_load();
    if (m_stopping && m_sessions.empty() && m_on_drained) {
        m_grace_timer.cancel();
        std::exchange(m_on_drained, nullptr)();
    }
}

bool Worker::hold_handshake() {
    if (m_held_handshakes >= k_on_demand_max_held) {
        return false;
    }
    ++m_held_handshakes;
    return true;
}

bool Worker::is_probe(std::string_view value) const {
    if (m_probe_key.empty() || value.size() != m_probe_key.size()) {
        return false;
    }
    unsigned char differ = 0; // the same time whatever the first wrong byte
    for (std::size_t i = 0; i < value.size(); ++i) {
        differ |= static_cast<unsigned char>(value[i] ^ m_probe_key[i]);
    }
    return differ == 0;
}

} // namespace agent::proxy
