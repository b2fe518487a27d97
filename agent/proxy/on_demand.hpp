#pragma once
// On-demand TLS (deploy-proxy --on-demand-tls, with --acme-dir): before an
// HTTPS connection's handshake, its ClientHello is read without taking it off
// the socket (MSG_PEEK, client_hello.hpp). When it asks for a name no
// certificate covers (and is not an ACME TLS-ALPN-01 validation), the name
// goes to the agent (Worker::ask_certificate: one datagram to
// DATA_DIR/proxy/certificate.sock) and the handshake waits, looking every
// k_on_demand_recheck whether the worker's certificates cover the name now,
// for k_on_demand_hold at most. Then the connection becomes a Session made
// with the worker's certificates of that moment: the new certificate when it
// came, else the handshake goes as for any name not covered.
//
// Without --on-demand-tls nothing of this runs: Worker makes the Session at once.

#include <agent/proxy/session.hpp>

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace agent::proxy {

class Worker;

class HandshakeGate final : public SessionBase, public std::enable_shared_from_this<HandshakeGate> {
  public:
    HandshakeGate(Socket socket, Worker& worker);
    ~HandshakeGate() override;
    HandshakeGate(const HandshakeGate&) = delete;
    HandshakeGate& operator=(const HandshakeGate&) = delete;

    void start();
    // Shutdown: a connection still reading its ClientHello or waiting for a
    // certificate has had no answer yet; it is closed with the idle ones.
    void close_if_idle() override;
    void resume() override {}

  private:
    using error_code = boost::system::error_code;
    enum class State { reading, holding, done };

    // Peeks at what arrived; waits for more, holds, or hands the connection on.
    void peek();
    void on_readable(error_code ec);
    void on_deadline(error_code ec);
    void on_recheck(error_code ec);
    void schedule_recheck();
    bool covered() const;
    // The connection becomes a TLS Session with the worker's current certificates.
    void hand_over();
    void close();

    Socket m_socket;
    Worker& m_worker;
    boost::asio::steady_timer m_timer; // reading: the handshake deadline; holding: the next look
    State m_state = State::reading;
    bool m_counted = false; // counted in Worker::hold_handshake
    std::string m_name;
    std::chrono::steady_clock::time_point m_hold_until;
};

} // namespace agent::proxy
