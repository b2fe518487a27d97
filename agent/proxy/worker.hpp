#pragma once
// A worker: one io_context, its listening socket, its client sessions, its
// upstream pool and its view of the routing table. Everything a worker owns
// is touched from its own thread only, so the hot path takes no locks.

#include <agent/proxy/routes.hpp>
#include <agent/proxy/upstream_pool.hpp>
#include <common/result.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <memory>
#include <unordered_set>

namespace agent::proxy {

class Session;

class Worker {
  public:
    explicit Worker(boost::asio::io_context& context);

    enum class ReusePort { no, yes };
    common::Status listen(const boost::asio::ip::tcp::endpoint& endpoint, ReusePort reuse);
    // Accepts on an already listening socket (takes ownership of `fd`).
    common::Status adopt(int fd);
    boost::asio::ip::tcp::endpoint local_endpoint() const;
    void start() { accept(); }
    boost::asio::io_context& context() { return m_context; }

    // Call on the worker's thread. New requests use `table` from now on;
    // requests under way finish with the table that routed them.
    void set_table(std::shared_ptr<const RouteTable> table);
    const std::shared_ptr<const RouteTable>& table() const { return m_table; }
    UpstreamPool& pool() { return m_pool; }

    // Call on the worker's thread. Stops accepting, closes idle connections,
    // lets requests under way finish, then calls `on_drained` (once).
    void stop(std::function<void()> on_drained);
    bool stopping() const { return m_stopping; }

    void add(Session* session) { m_sessions.insert(session); }
    void remove(Session* session);

  private:
    void accept();
    void on_accept(boost::system::error_code ec, Socket socket);

    boost::asio::io_context& m_context;
    boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, Executor> m_acceptor;
    boost::asio::steady_timer m_retry_timer;
    std::shared_ptr<const RouteTable> m_table;
    UpstreamPool m_pool;
    std::unordered_set<Session*> m_sessions;
    bool m_stopping = false;
    std::function<void()> m_on_drained;
};

} // namespace agent::proxy
