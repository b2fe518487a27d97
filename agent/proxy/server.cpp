#include <agent/proxy/acme.hpp>
#include <agent/proxy/limits.hpp>
#include <agent/proxy/memory.hpp>
#include <agent/proxy/route_loader.hpp>
#include <agent/proxy/server.hpp>
#include <agent/proxy/session.hpp>
#include <agent/proxy/waker.hpp>
#include <agent/proxy/worker.hpp>
#include <common/log.hpp>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
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

std::string describe(const CertificateInfo& info) {
    std::string names;
    for (const auto& name : info.names) {
        names += (names.empty() ? "" : ", ") + name;
    }
    const auto expires = std::chrono::system_clock::to_time_t(info.not_after);
    std::tm tm{};
    gmtime_r(&expires, &tm);
    return fmt::format("{} for {} (valid until {:04}-{:02}-{:02})", info.cert_path, names,
                       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

class Server {
  public:
    explicit Server(const ServerOptions& options)
        : m_options(options), m_signals(m_context, SIGHUP, SIGTERM, SIGINT),
          m_poll_timer(m_context), m_drain_timer(m_context), m_access_timer(m_context),
          m_loader(options.routes, options.applied) {}

    common::Status start();
    // Returns false when the drain was cut short (sessions may still exist).
    bool run();

  private:
    void load(std::string_view why);
    // Reads the certificate files and notes their stamps (also when they fail).
    common::Result<std::shared_ptr<TlsSetup>> read_certificates();
    // Whether the certificate files changed since read_certificates().
    bool certificates_changed() const;
    // One line per certificate loaded, after `prefix` ("certificate ",
    // "certificate reloaded (WHY): "), one per managed file left out.
    void log_certificates(const std::string& prefix) const;
    // Reloads them for every worker; false (logged) when they are not usable.
    bool load_certificates(std::string_view why);
    void publish(std::shared_ptr<const RouteTable> table);
    void on_applied(std::uint64_t sequence, std::uint64_t generation);
    void confirm_applied(std::uint64_t generation);
    void poll();
    // DATA_DIR/proxy/stats.json: what every worker counted (docs/metrics.md).
    void write_stats();
    // Every worker's access log lines to the files, every k_poll_interval
    // until the last worker drained, and once more when the workers stopped.
    void flush_access();
    void schedule_access_flush();
    void wait_signal();
    void begin_shutdown();
    void on_worker_drained();
    void force_stop();

    ServerOptions m_options;
    asio::io_context m_context{k_concurrency_hint};
    asio::signal_set m_signals;
    asio::steady_timer m_poll_timer;
    asio::steady_timer m_drain_timer;
    asio::steady_timer m_access_timer;
    std::optional<AccessLogFiles> m_access_files; // --access-log-dir given
    RouteLoader m_loader;
    // Scale to zero: asks the agent to start a sleeping app (waker.hpp).
    Waker m_waker{std::filesystem::path(m_options.routes).parent_path() / "wake.sock"};
    // On-demand TLS: asks the agent for a certificate (on_demand.hpp).
    Waker m_certificate_waker{std::filesystem::path(m_options.routes).parent_path() /
                                  "certificate.sock",
                              "get a certificate for",
                              "handshakes for names without a certificate go on without waiting"};
    // Worker 0 runs on m_context (the main thread); the others on their own.
    std::vector<std::unique_ptr<asio::io_context>> m_extra_contexts;
    std::vector<std::unique_ptr<Worker>> m_workers;
    AcceptShare m_accept_share{m_options.threads}; // the workers share an inherited socket
    std::shared_ptr<TlsSetup> m_tls;
    std::vector<std::int64_t> m_cert_stamps; // of the files last tried
    std::string m_acme_stamps;               // of the managed files last tried
    std::uint64_t m_published = 0;
    std::uint64_t m_applied = 0;
    bool m_confirm_pending = false; // the applied file could not be written
    bool m_startup_released = false;
    // The table generation every worker routes with, as last confirmed: in
    // stats.json, so the agent knows its figures count every request routed
    // before that table (its idle_stop check).
    std::uint64_t m_confirmed = 0;
    std::string m_instance; // this process's run, for the agent's counter resets
    unsigned m_polls = 0;
    bool m_stopping = false;
    bool m_forced = false;
    std::size_t m_drained = 0;
};

common::Status Server::start() {
    const bool tls = !m_options.certificates.empty() || !m_options.acme_dir.empty();
    if (tls) {
        auto setup = read_certificates();
        if (!setup) {
            return setup.error();
        }
        m_tls = std::move(*setup);
    }
    auto endpoint_of = [](const common::HostPort& where) {
        boost::system::error_code ec;
        auto address = where.host.empty() ? asio::ip::address(asio::ip::address_v4::any())
                                          : asio::ip::make_address(where.host, ec);
        return tcp::endpoint(address, where.port);
    };
    tcp::endpoint endpoint = endpoint_of(m_options.listen);
    tcp::endpoint tls_endpoint =
        m_options.tls_listen ? endpoint_of(*m_options.tls_listen) : tcp::endpoint();
    const auto reuse = m_options.threads > 1 ? Worker::ReusePort::yes : Worker::ReusePort::no;
    // Binds `where`, or serves on the inherited `fd` (every worker its own copy).
    auto open_listener = [&](Worker& worker, unsigned index, Worker::Listener which,
                             tcp::endpoint& where, int fd) -> common::Status {
        auto listening = fd < 0       ? worker.listen(which, where, reuse)
                         : index == 0 ? worker.adopt(which, fd)
                                      : worker.adopt(which, ::dup(fd));
        if (listening) {
            where = worker.local_endpoint(which); // port 0: the others join the chosen port
        }
        return listening;
    };
    for (unsigned i = 0; i < m_options.threads; ++i) {
        asio::io_context* context = &m_context;
        if (i > 0) {
            context = m_extra_contexts
                          .emplace_back(std::make_unique<asio::io_context>(k_concurrency_hint))
                          .get();
        }
        auto& worker = *m_workers.emplace_back(std::make_unique<Worker>(*context));
        worker.set_probe_key(m_options.probe_key);
        worker.set_waker(&m_waker);
        if (m_options.threads > 1) {
            worker.share_accepts(&m_accept_share, i); // used on inherited sockets only
        }
        if (!m_options.acme_dir.empty()) {
            worker.set_acme_dir(m_options.acme_dir);
            if (m_options.on_demand_tls) {
                worker.set_on_demand(&m_certificate_waker);
            }
        }
        worker.log_access(!m_options.access_log_dir.empty());
        if (auto ok =
                open_listener(worker, i, Worker::Listener::http, endpoint, m_options.listen_fd);
            !ok) {
            return ok;
        }
        if (tls) {
            if (auto ok = open_listener(worker, i, Worker::Listener::https, tls_endpoint,
                                        m_options.tls_listen_fd);
                !ok) {
                return ok;
            }
            worker.set_tls(m_tls);
        }
    }
    if (tls && m_options.redirect_https) {
        for (auto& worker : m_workers) {
            worker->redirect_https(tls_endpoint.port());
        }
    }
    m_instance = fmt::format("{}-{}", ::getpid(),
                             std::chrono::system_clock::now().time_since_epoch().count());
    load("startup");
    for (auto& worker : m_workers) {
        worker->start();
    }
    common::log_info(fmt::format("deploy-proxy listening on {}:{} ({} thread{})",
                                 endpoint.address().to_string(), endpoint.port(), m_options.threads,
                                 m_options.threads == 1 ? "" : "s"));
    if (tls) {
        common::log_info(fmt::format(
            "HTTPS on {}:{}{}", tls_endpoint.address().to_string(), tls_endpoint.port(),
            m_options.redirect_https ? "; plain HTTP to these names is redirected to it" : ""));
        if (!m_options.acme_dir.empty()) {
            common::log_info(
                fmt::format("ACME files from {}{}", m_options.acme_dir.string(),
                            m_options.on_demand_tls
                                ? "; on-demand TLS: a name no certificate covers is asked of " +
                                      (m_options.routes.parent_path() / "certificate.sock").string()
                                : std::string()));
        }
        log_certificates("certificate ");
    }
    if (!m_options.access_log_dir.empty()) {
        m_access_files.emplace(m_options.access_log_dir, m_options.access_log_max_size);
        schedule_access_flush();
    }
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
    flush_access(); // what the last requests wrote
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

common::Result<std::shared_ptr<TlsSetup>> Server::read_certificates() {
    m_cert_stamps = file_stamps(m_options.certificates); // what this attempt read
    if (!m_options.acme_dir.empty()) {
        m_acme_stamps = acme::stamps(m_options.acme_dir);
    }
    auto loaded = m_options.acme_dir.empty()
                      ? TlsCertificates::load(m_options.certificates)
                      : TlsCertificates::load(m_options.certificates, m_options.acme_dir);
    if (!loaded) {
        return loaded.error();
    }
    return std::make_shared<TlsSetup>(*loaded);
}

bool Server::certificates_changed() const {
    return file_stamps(m_options.certificates) != m_cert_stamps ||
           (!m_options.acme_dir.empty() && acme::stamps(m_options.acme_dir) != m_acme_stamps);
}

void Server::log_certificates(const std::string& prefix) const {
    const TlsCertificates& loaded = *m_tls->certificates;
    for (const auto& info : loaded.certificates()) {
        common::log_info(prefix + describe(info));
    }
    for (const auto& info : loaded.challenges()) {
        common::log_info(fmt::format("{}{} (ACME TLS-ALPN-01 challenge for {})", prefix,
                                     info.cert_path, info.names.front()));
    }
    for (const auto& skipped : loaded.skipped()) {
        common::log_error("managed certificate left out: " + skipped);
    }
    if (loaded.certificates().empty()) {
        common::log_warn("no certificate yet: HTTPS handshakes fail until the agent writes one");
    }
}

bool Server::load_certificates(std::string_view why) {
    auto loaded = read_certificates();
    if (!loaded) {
        common::log_error(fmt::format("certificates not reloaded ({}): {}; still serving the "
                                      "previous ones",
                                      why, loaded.error().message));
        return false;
    }
    auto setup = std::move(*loaded);
    for (auto& worker : m_workers) {
        asio::post(worker->context(), [worker = worker.get(), setup] { worker->set_tls(setup); });
    }
    m_tls = std::move(setup);
    log_certificates(fmt::format("certificate reloaded ({}): ", why));
    return true;
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
    // The figures first: read after the applied file, they count every
    // request a worker routed with an earlier table.
    m_confirmed = generation;
    write_stats();
    if (!m_startup_released) {
        // Serving starts now: what start-up alone used need not stay mapped.
        m_startup_released = true;
        const std::size_t released = release_startup_pages();
        common::log_debug(
            fmt::format("start-up done: {} KiB of file pages unmapped", released >> 10));
    }
    if (auto written = m_loader.write_applied(generation); !written) {
        common::log_error(fmt::format("cannot confirm routes generation {}: {}; trying again",
                                      generation, written.error().message));
        m_confirm_pending = true; // poll() writes it again: the agent waits for it
        return;
    }
    m_confirm_pending = false;
}

void Server::poll() {
    m_poll_timer.expires_after(k_poll_interval);
    m_poll_timer.async_wait([this](boost::system::error_code ec) {
        if (ec || m_stopping) {
            return;
        }
        if (m_loader.changed()) {
            load("file changed");
        } else if (m_confirm_pending && m_applied == m_published) {
            confirm_applied(m_loader.table()->generation());
        }
        if (m_tls && certificates_changed()) {
            load_certificates("file changed");
        }
        if (++m_polls % 4 == 0) { // each second
            write_stats();
        }
        if (m_polls % 20 == 0) { // every 5 s
            const auto trimmed = trim_free_memory(k_trim_min_free);
            if (trimmed.rss_before >= trimmed.rss_after + (1u << 20)) {
                common::log_info(fmt::format(
                    "gave the heap's free memory back to the system: resident {} -> {} KiB",
                    trimmed.rss_before >> 10, trimmed.rss_after >> 10));
            }
        }
        poll();
    });
}

void Server::write_stats() {
    std::map<std::string, AppStats> apps;
    std::int64_t connections = 0;
    std::map<std::string, AppStats> releases; // of apps with a canary
    auto workers = nlohmann::json::array();
    for (auto& worker : m_workers) {
        worker->stats().add_to(apps, connections);
        worker->stats().add_releases_to(releases);
        const auto own = worker->stats().worker();
        workers.push_back({{"requests", own.requests}, {"connections", own.connections}});
    }
    const auto file = std::filesystem::path(m_options.routes).parent_path() / "stats.json";
    auto snapshot = stats_json(m_instance, apps, connections);
    if (!releases.empty()) {
        snapshot["releases"] = std::move(stats_json({}, releases, 0)["apps"]);
    }
    snapshot["workers"] = std::move(workers);
    snapshot["routes"] = m_confirmed;
    if (!write_snapshot(file, snapshot.dump())) {
        common::log_debug("cannot write " + file.string());
    }
}

void Server::flush_access() {
    if (!m_access_files) {
        return;
    }
    std::vector<std::map<std::string, std::string>> parts(m_workers.size());
    std::uint64_t dropped = 0;
    for (std::size_t i = 0; i < m_workers.size(); ++i) {
        dropped += m_workers[i]->access().take(parts[i]);
    }
    m_access_files->write(merge_access_lines(std::move(parts)));
    if (dropped > 0) {
        common::log_warn(fmt::format("{} access log line{} dropped: the files were not written "
                                     "fast enough",
                                     dropped, dropped == 1 ? "" : "s"));
    }
}

void Server::schedule_access_flush() {
    m_access_timer.expires_after(k_poll_interval);
    m_access_timer.async_wait([this](boost::system::error_code ec) {
        if (ec) {
            return;
        }
        flush_access();
        schedule_access_flush();
    });
}

void Server::wait_signal() {
    m_signals.async_wait([this](boost::system::error_code ec, int signal) {
        if (ec) {
            return;
        }
        if (signal == SIGHUP) {
            // The agent signals on every route change: only changed files
            // are loaded again (a new context also drops session tickets).
            if (m_tls && !m_stopping && certificates_changed()) {
                load_certificates("SIGHUP");
            }
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
    write_stats();
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
    m_access_timer.cancel();
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
