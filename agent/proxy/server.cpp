#include <agent/proxy/limits.hpp>
#include <agent/proxy/route_loader.hpp>
#include <agent/proxy/server.hpp>
#include <agent/proxy/worker.hpp>
#include <common/log.hpp>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <fmt/format.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <pthread.h>
#include <thread>
#include <unistd.h>

namespace agent::proxy {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// One thread runs each context, and a socket is only touched by the thread of
// its worker: no lock around each socket operation. (Handlers posted from
// other threads, like a new routing table, still go through a locked queue.)
constexpr int k_concurrency_hint = BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO;

// Runs `context` until it runs out of work; a handler that throws is logged
// and the loop goes on: one bad request must not take every app offline.
void run_context(asio::io_context& context) {
    for (;;) {
        try {
            context.run();
            return;
        } catch (const std::exception& e) {
            common::log_error(fmt::format("unexpected error in request handling: {}", e.what()));
        }
    }
}

class Server {
  public:
    explicit Server(const ServerOptions& options)
        : m_options(options), m_signals(m_context, SIGHUP, SIGTERM, SIGINT),
          m_poll_timer(m_context), m_drain_timer(m_context),
          m_loader(options.routes, options.applied) {}

    common::Status start();
    // Returns false when the drain was cut short (sessions may still exist).
    bool run();

  private:
    void load(std::string_view why);
    void publish(std::shared_ptr<const RouteTable> table);
    void on_applied(std::uint64_t sequence, std::uint64_t generation);
    void confirm_applied(std::uint64_t generation);
    void poll();
    void wait_signal();
    void begin_shutdown();
    void on_worker_drained();
    void force_stop();

    ServerOptions m_options;
    asio::io_context m_context{k_concurrency_hint};
    asio::signal_set m_signals;
    asio::steady_timer m_poll_timer;
    asio::steady_timer m_drain_timer;
    RouteLoader m_loader;
    // Worker 0 runs on m_context (the main thread); the others on their own.
    std::vector<std::unique_ptr<asio::io_context>> m_extra_contexts;
    std::vector<std::unique_ptr<Worker>> m_workers;
    std::uint64_t m_published = 0;
    std::uint64_t m_applied = 0;
    bool m_stopping = false;
    bool m_forced = false;
    std::size_t m_drained = 0;
};

common::Status Server::start() {
    boost::system::error_code ec;
    auto address = m_options.listen.host.empty()
                       ? asio::ip::address(asio::ip::address_v4::any())
                       : asio::ip::make_address(m_options.listen.host, ec);
    tcp::endpoint endpoint(address, m_options.listen.port);
    const auto reuse = m_options.threads > 1 ? Worker::ReusePort::yes : Worker::ReusePort::no;
    for (unsigned i = 0; i < m_options.threads; ++i) {
        asio::io_context* context = &m_context;
        if (i > 0) {
            context = m_extra_contexts
                          .emplace_back(std::make_unique<asio::io_context>(k_concurrency_hint))
                          .get();
        }
        auto& worker = *m_workers.emplace_back(std::make_unique<Worker>(*context));
        // An inherited socket is shared by the workers (each its own copy of it).
        auto listening = m_options.listen_fd < 0 ? worker.listen(endpoint, reuse)
                         : i == 0                ? worker.adopt(m_options.listen_fd)
                                                 : worker.adopt(::dup(m_options.listen_fd));
        if (!listening) {
            return listening;
        }
        endpoint = worker.local_endpoint(); // port 0: the others join the chosen port
    }
    load("startup");
    for (auto& worker : m_workers) {
        worker->start();
    }
    common::log_info(fmt::format("deploy-proxy listening on {}:{} ({} thread{})",
                                 endpoint.address().to_string(), endpoint.port(), m_options.threads,
                                 m_options.threads == 1 ? "" : "s"));
    wait_signal();
    poll();
    return {};
}

bool Server::run() {
    std::vector<std::thread> threads;
    for (auto& context : m_extra_contexts) {
        threads.emplace_back([&context] { run_context(*context); });
    }
    run_context(m_context);
    for (auto& thread : threads) {
        thread.join();
    }
    return !m_forced;
}

void Server::force_stop() {
    m_forced = true;
    m_context.stop();
    for (auto& context : m_extra_contexts) {
        context->stop();
    }
}

void Server::load(std::string_view why) {
    auto table = m_loader.reload();
    if (!table) {
        common::log_error(fmt::format("routes not reloaded ({}): {}; still serving generation {}",
                                      why, table.error().message, m_loader.table()->generation()));
        return;
    }
    common::log_info(fmt::format("routes generation {}: {} route{}", (*table)->generation(),
                                 (*table)->size(), (*table)->size() == 1 ? "" : "s"));
    publish(*table);
}

// Hands the table to every worker; once all of them use it, writes the
// applied file (the agent waits for it before draining the old release).
void Server::publish(std::shared_ptr<const RouteTable> table) {
    const std::uint64_t sequence = ++m_published;
    auto pending = std::make_shared<std::atomic<std::size_t>>(m_workers.size());
    for (auto& worker : m_workers) {
        asio::post(worker->context(), [this, worker = worker.get(), table, pending, sequence] {
            worker->set_table(table);
            if (pending->fetch_sub(1) == 1) {
                asio::post(m_context, [this, sequence, generation = table->generation()] {
                    on_applied(sequence, generation);
                });
            }
        });
    }
}

void Server::on_applied(std::uint64_t sequence, std::uint64_t generation) {
    if (sequence <= m_applied) {
        return; // a newer table is already applied
    }
    m_applied = sequence;
    confirm_applied(generation);
}

void Server::confirm_applied(std::uint64_t generation) {
    if (auto written = m_loader.write_applied(generation); !written) {
        common::log_error(written.error().message);
    }
}

void Server::poll() {
    m_poll_timer.expires_after(k_poll_interval);
    m_poll_timer.async_wait([this](boost::system::error_code ec) {
        if (ec || m_stopping) {
            return;
        }
        if (m_loader.changed()) {
            load("file changed");
        }
        poll();
    });
}

void Server::wait_signal() {
    m_signals.async_wait([this](boost::system::error_code ec, int signal) {
        if (ec) {
            return;
        }
        if (signal == SIGHUP) {
            if (m_stopping) {
                // nothing: no new requests are routed any more
            } else if (m_loader.changed()) {
                load("SIGHUP");
            } else if (m_applied == m_published) {
                // The 250 ms check got there first and every worker has the
                // table: confirm what is live. (A pending publish writes it.)
                confirm_applied(m_loader.table()->generation());
            }
        } else if (!m_stopping) {
            common::log_info(fmt::format("{}: draining connections (up to {}s)",
                                         signal == SIGTERM ? "SIGTERM" : "SIGINT",
                                         k_drain_timeout.count()));
            begin_shutdown();
        } else {
            common::log_warn("second stop signal: exiting without waiting");
            return force_stop();
        }
        wait_signal();
    });
}

void Server::begin_shutdown() {
    m_stopping = true;
    m_poll_timer.cancel();
    m_drain_timer.expires_after(k_drain_timeout);
    m_drain_timer.async_wait([this](boost::system::error_code ec) {
        if (ec) {
            return;
        }
        common::log_warn("drain timeout: closing the remaining connections");
        force_stop();
    });
    for (auto& worker : m_workers) {
        asio::post(worker->context(), [this, worker = worker.get()] {
            worker->stop([this] { asio::post(m_context, [this] { on_worker_drained(); }); });
        });
    }
}

void Server::on_worker_drained() {
    if (++m_drained < m_workers.size()) {
        return;
    }
    common::log_info("all connections drained; exiting");
    m_drain_timer.cancel();
    m_signals.cancel();
}

} // namespace

int run_server(const ServerOptions& options) {
    std::signal(SIGPIPE, SIG_IGN);
    Server server(options);
    // The agent spawns us with SIGHUP blocked so that one sent before the
    // handler existed stays pending; now m_signals handles it.
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &hup, nullptr);
    if (auto started = server.start(); !started) {
        common::log_error(started.error().message);
        return common::exit_code(started.error().kind);
    }
    if (!server.run()) {
        // Sessions still hold on to their workers: tearing the objects down
        // in order is not worth it, the kernel closes every socket.
        std::fflush(stderr);
        std::_Exit(0);
    }
    return 0;
}

} // namespace agent::proxy
