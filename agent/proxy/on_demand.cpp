#include <agent/proxy/client_hello.hpp>
#include <agent/proxy/limits.hpp>
#include <agent/proxy/on_demand.hpp>
#include <agent/proxy/worker.hpp>
#include <common/log.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <sys/socket.h>

namespace agent::proxy {

namespace asio = boost::asio;

HandshakeGate::HandshakeGate(Socket socket, Worker& worker)
    : m_socket(std::move(socket)), m_worker(worker), m_timer(m_socket.get_executor()) {
    m_worker.add(this);
    m_worker.stats().connection(+1);
}

HandshakeGate::~HandshakeGate() {
    if (m_counted) {
        m_worker.release_handshake();
    }
    m_worker.stats().connection(-1);
    m_worker.remove(this);
}

void HandshakeGate::start() {
    // The whole ClientHello must come within the time a handshake has.
    m_timer.expires_after(k_handshake_timeout);
    m_timer.async_wait([self = shared_from_this()](error_code ec) { self->on_deadline(ec); });
    peek();
}

void HandshakeGate::peek() {
    // The socket is edge-triggered in Asio's reactor and waited on only from
    // this worker's thread: bytes that arrive after this read make the wait
    // below complete, those before it are read here.
    char bytes[k_max_client_hello_record];
    ssize_t got;
    do {
        got = ::recv(m_socket.native_handle(), bytes, sizeof bytes, MSG_PEEK | MSG_DONTWAIT);
    } while (got < 0 && errno == EINTR);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        return close(); // gone before its ClientHello
    }
    const auto hello = parse_client_hello(
        got < 0 ? std::string_view() : std::string_view(bytes, static_cast<std::size_t>(got)));
    if (hello.status == ClientHello::Status::incomplete) {
        m_socket.async_wait(asio::socket_base::wait_read,
                            [self = shared_from_this()](error_code ec) { self->on_readable(ec); });
        return;
    }
    m_timer.cancel(); // the deadline of the ClientHello
    m_name = hello.name;
    if (hello.status != ClientHello::Status::named || hello.acme_tls || m_worker.tls() == nullptr ||
        covered() || m_worker.stopping() || !m_worker.hold_handshake()) {
        return hand_over();
    }
    m_counted = true;
    if (!m_worker.ask_certificate(m_name)) {
        return hand_over(); // no agent to get one: nothing to wait for
    }
    m_state = State::holding;
    common::log_debug(fmt::format("no certificate covers {}: the agent was asked for one (the "
                                  "handshake waits up to {}s)",
                                  m_name, k_on_demand_hold.count()));
    m_hold_until = std::chrono::steady_clock::now() + k_on_demand_hold;
    schedule_recheck();
}

void HandshakeGate::on_readable(error_code ec) {
    if (ec || m_state != State::reading) {
        return; // closed: the deadline, or shutdown
    }
    peek();
}

void HandshakeGate::on_deadline(error_code ec) {
    if (ec || m_state != State::reading) {
        return; // cancelled: the ClientHello came
    }
    common::log_debug("no TLS ClientHello within the handshake timeout: connection closed");
    close();
}

void HandshakeGate::schedule_recheck() {
    m_timer.expires_after(k_on_demand_recheck);
    m_timer.async_wait([self = shared_from_this()](error_code ec) { self->on_recheck(ec); });
}

void HandshakeGate::on_recheck(error_code ec) {
    if (ec || m_state != State::holding) {
        return;
    }
    if (covered()) {
        common::log_debug(fmt::format("certificate for {} arrived: handshake goes on", m_name));
        return hand_over();
    }
    if (m_worker.stopping() || std::chrono::steady_clock::now() >= m_hold_until) {
        common::log_debug(
            fmt::format("still no certificate for {}: handshake goes on without it", m_name));
        return hand_over();
    }
    schedule_recheck();
}

bool HandshakeGate::covered() const {
    return m_worker.tls() != nullptr && m_worker.tls()->certificates->covers(m_name);
}

void HandshakeGate::hand_over() {
    m_state = State::done;
    m_timer.cancel();
    if (m_counted) {
        m_counted = false;
        m_worker.release_handshake();
    }
    // Registered before this gate goes, so a draining worker never sees
    // the connection missing in between.
    std::make_shared<Session<TlsStream>>(std::move(m_socket), m_worker, m_worker.tls())->start();
}

void HandshakeGate::close_if_idle() {
    if (m_state != State::done) {
        close();
    }
}

void HandshakeGate::close() {
    m_state = State::done;
    m_timer.cancel();
    error_code ignored;
    m_socket.shutdown(asio::socket_base::shutdown_both, ignored);
    m_socket.close(ignored);
}

} // namespace agent::proxy
