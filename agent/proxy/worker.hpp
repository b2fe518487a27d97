#pragma once
// A worker: one io_context, its listening sockets (HTTP, and HTTPS when TLS
// is on), its client sessions, its upstream pool and its view of the routing
// table and certificates. Everything a worker owns is touched from its own
// thread only, so the hot path takes no locks.

#include <agent/proxy/accept_share.hpp>
#include <agent/proxy/access_log.hpp>
#include <agent/proxy/acme.hpp>
#include <agent/proxy/routes.hpp>
#include <agent/proxy/stats.hpp>
#include <agent/proxy/upstream_pool.hpp>
#include <agent/proxy/waker.hpp>
#include <common/result.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace agent::proxy {

class SessionBase;
struct TlsSetup;

class Worker {
  public:
    explicit Worker(boost::asio::io_context& context);

    enum class Listener { http, https };
    enum class ReusePort { no, yes };
    common::Status listen(Listener which, const boost::asio::ip::tcp::endpoint& endpoint,
                          ReusePort reuse);
    // Accepts on an already listening socket (takes ownership of `fd`).
    common::Status adopt(Listener which, int fd);
    boost::asio::ip::tcp::endpoint local_endpoint(Listener which) const;
    void start();
    boost::asio::io_context& context() { return m_context; }

    // Call on the worker's thread. New TLS connections handshake with `tls`;
    // connections under way keep the certificates they started with.
    void set_tls(std::shared_ptr<TlsSetup> tls) { m_tls = std::move(tls); }
    const std::shared_ptr<TlsSetup>& tls() const { return m_tls; }
    // Plain HTTP requests for a host a certificate covers get a redirect to
    // https on `port` (0: no redirects).
    void redirect_https(unsigned port) { m_https_port = port; }
    bool redirects_https() const { return m_https_port != 0 && m_tls != nullptr; }
    unsigned https_port() const { return m_https_port; }

    // Before start(): the agent's probe key (empty: none). is_probe() tells
    // whether the X-Deploy-Probe value of a request is that key.
    void set_probe_key(std::string key) { m_probe_key = std::move(key); }
    // Scale to zero: asks the agent to start a sleeping app (waker.hpp).
    void set_waker(Waker* waker) { m_waker = waker; }
    void wake(const std::string& app) {
        if (m_waker != nullptr)
            m_waker->wake(app);
    }
    bool is_probe(std::string_view value) const;
    // Before start(): the workers accept on one shared socket (accept_share.hpp);
    // this one is `index` among them.
    void share_accepts(AcceptShare* share, std::size_t index) {
        m_accept_share = share;
        m_accept_index = index;
    }

    // Before start(): --acme-dir (acme.hpp). A GET for
    // /.well-known/acme-challenge/TOKEN whose file DIR/http-01/TOKEN exists is
    // answered with it, on either listener, before any routing.
    void set_acme_dir(const std::filesystem::path& dir) {
        m_acme_http_dir = dir / acme::k_http_dir;
    }
    const std::filesystem::path& acme_http_dir() const { return m_acme_http_dir; }

    // Before start(): --on-demand-tls. Each HTTPS connection's ClientHello is
    // read first (on_demand.hpp); a name no certificate covers is sent to the
    // agent with `certificates` and its handshake waits for the certificate.
    void set_on_demand(Waker* certificates) { m_certificate_waker = certificates; }
    // False when the agent could not be told.
    bool ask_certificate(const std::string& name) {
        return m_certificate_waker != nullptr && m_certificate_waker->wake(name);
    }
    // Counts the handshakes waiting for a certificate: false (and not
    // counted) when k_on_demand_max_held already wait.
    bool hold_handshake();
    void release_handshake() { --m_held_handshakes; }

    // Call on the worker's thread. New requests use `table` from now on;
    // requests under way finish with the table that routed them.
    void set_table(std::shared_ptr<const RouteTable> table);
    const std::shared_ptr<const RouteTable>& table() const { return m_table; }
    UpstreamPool& pool() { return m_pool; }

    // Call on the worker's thread. Stops accepting, answers requests under way
    // and those arriving within k_idle_grace with Connection: close, closes the
    // connections still idle after it, then calls `on_drained` (once).
    void stop(std::function<void()> on_drained);
    bool stopping() const { return m_stopping; }
    // Stopping, and the moment for idle connections to send one more request is over.
    bool idle_grace_over() const { return m_grace_over; }

    // What this worker counted (docs/metrics.md); read by the server's timer.
    Stats& stats() { return m_stats; }

    // Access logs (access_log.hpp): on when the server writes them. The
    // buffer is read by the server's timer; the ids and the clock belong to
    // the worker's thread.
    void log_access(bool on) { m_log_access = on; }
    bool logs_access() const { return m_log_access; }
    AccessBuffer& access() { return m_access; }
    RequestIds& request_ids() { return m_request_ids; }
    AccessClock& access_clock() { return m_access_clock; }

    void add(SessionBase* session) {
        m_sessions.insert(session);
        publish_load();
    }
    void remove(SessionBase* session);

    // Requests held at a paused route wait here, in arrival order; every new
    // table (set_table) and stop() release them all to be routed again.
    void hold(std::shared_ptr<SessionBase> session) { m_held.push_back(std::move(session)); }
    void unhold(SessionBase* session);
    std::size_t held() const { return m_held.size(); }

  private:
    using Acceptor = boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, Executor>;
    Acceptor& acceptor(Listener which) { return which == Listener::http ? m_http : m_https; }
    const Acceptor& acceptor(Listener which) const {
        return which == Listener::http ? m_http : m_https;
    }
    void accept(Listener which);
    void accept_or_yield(Listener which, unsigned yielded);
    void publish_load() {
        if (m_accept_share != nullptr)
            m_accept_share->set(m_accept_index, m_sessions.size());
    }
    void on_accept(Listener which, boost::system::error_code ec, Socket socket);

    boost::asio::io_context& m_context;
    Acceptor m_http;
    Acceptor m_https;                        // open only when TLS is on
    boost::asio::steady_timer m_grace_timer; // stop(): idle connections closed after it
    boost::asio::steady_timer m_sweep_timer; // the pool's aged connections closed at each tick
    void sweep_pool();
    std::shared_ptr<const RouteTable> m_table;
    std::shared_ptr<TlsSetup> m_tls;
    unsigned m_https_port = 0;
    std::string m_probe_key;
    Waker* m_waker = nullptr;
    Waker* m_certificate_waker = nullptr; // on-demand TLS on
    std::size_t m_held_handshakes = 0;
    std::filesystem::path m_acme_http_dir; // empty: no --acme-dir
    UpstreamPool m_pool;
    std::unordered_set<SessionBase*> m_sessions;
    AcceptShare* m_accept_share = nullptr; // null: one worker, or sockets of its own
    bool m_adopted[2] = {false, false};    // per Listener: an inherited socket (adopt())
    std::size_t m_accept_index = 0;
    std::vector<std::shared_ptr<SessionBase>> m_held;
    void release_held();
    Stats m_stats;
    bool m_log_access = false;
    AccessBuffer m_access;
    RequestIds m_request_ids;
    AccessClock m_access_clock;
    bool m_stopping = false;
    bool m_grace_over = false;
    std::function<void()> m_on_drained;
};

} // namespace agent::proxy
