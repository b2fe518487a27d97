#include <agent/api/auth_gate.hpp>
#include <agent/api/handlers.hpp>
#include <agent/api/serve.hpp>
#include <agent/api/server.hpp>
#include <agent/api/tls.hpp>
#include <agent/auth/bootstrap.hpp>
#include <agent/auth/login_throttle.hpp>
#include <agent/proxy/tls_certificates.hpp>
#include <agent/runtime/cpus.hpp>
#include <agent/runtime/ports.hpp>
#include <agent/runtime/process.hpp>
#include <common/address.hpp>
#include <common/duration.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace agent::api {

namespace fs = std::filesystem;

namespace {

std::string default_proxy_bin() {
    std::error_code ec;
    const auto self = fs::read_symlink("/proc/self/exe", ec);
    if (ec)
        return "deploy-proxy";
    return (self.parent_path() / "deploy-proxy").string();
}

common::Status create_layout(const DataDir& dir) {
    std::error_code ec;
    for (const auto& path : {dir.root(), dir.blobs(), dir.root() / "apps", dir.proxy_dir()}) {
        fs::create_directories(path, ec);
        if (ec)
            return common::make_error(
                common::ErrorKind::io,
                fmt::format("cannot create {}: {}", path.string(), ec.message()));
    }
    fs::create_directories(dir.keys(), ec);
    if (!ec)
        fs::permissions(dir.keys(), fs::perms::owner_all, ec);
    if (ec)
        return common::make_error(
            common::ErrorKind::io,
            fmt::format("cannot create {}: {}", dir.keys().string(), ec.message()));
    return {};
}

// The data dir is the agent's alone (docs/security.md): an existing one that
// other users may read or write (made by hand, or by an older agent) is
// tightened, with what holds the secrets in it. The rest of the tree is not
// walked: what is written from now on is 0600/0700 (the umask of serve).
void tighten_data_dir(const DataDir& dir) {
    const auto tighten = [](const fs::path& path, fs::perms wanted) {
        std::error_code ec;
        const auto status = fs::symlink_status(path, ec);
        if (ec || !fs::exists(status) || fs::is_symlink(status))
            return;
        const auto open = status.permissions() & (fs::perms::group_all | fs::perms::others_all);
        if (open == fs::perms::none)
            return;
        fs::permissions(path, wanted, ec);
        if (ec)
            common::log_warn(fmt::format("{} is mode {:04o}, open to other users, and cannot be "
                                         "made {:04o}: {}",
                                         path.string(), static_cast<unsigned>(status.permissions()),
                                         static_cast<unsigned>(wanted), ec.message()));
        else
            common::log_warn(fmt::format("{} was mode {:04o}, open to other users: made it {:04o} "
                                         "(the data dir holds the state, tokens and secrets)",
                                         path.string(), static_cast<unsigned>(status.permissions()),
                                         static_cast<unsigned>(wanted)));
    };
    constexpr auto k_dir = fs::perms::owner_all;
    constexpr auto k_file = fs::perms::owner_read | fs::perms::owner_write;
    tighten(dir.root(), k_dir);
    for (const char* suffix : {"", "-wal", "-shm"})
        tighten(dir.state_db().string() + suffix, k_file);
    tighten(dir.admin_token(), k_file);
    tighten(dir.keys(), k_dir);
    tighten(dir.keys() / "master.key", k_file);
}

// Blocks SIGTERM/SIGINT (and SIGHUP: look at the API certificate's files now)
// in this thread and every thread started after it, so that only
// wait_for_signal() receives them.
sigset_t block_stop_signals() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN); // a vanished client is an error code, not a death
    return signals;
}

// The next of `signals`; every second until one comes, `tick()`.
template <class Tick> int wait_for_signal(const sigset_t& signals, Tick&& tick) {
    const timespec second{1, 0};
    while (true) {
        const int signal = sigtimedwait(&signals, nullptr, &second);
        if (signal > 0)
            return signal;
        tick(); // a timeout (EAGAIN), or EINTR
    }
}

int fail(const common::Error& error) {
    std::fprintf(stderr, "deploy-agent: %s\n", error.message.c_str());
    const bool usage =
        error.kind == common::ErrorKind::usage || error.kind == common::ErrorKind::config;
    return usage ? 2 : 1;
}

// A socket that cannot be made (e.g. /run/deploy-agent for a user who may not
// write /run) says how to serve it elsewhere or not at all.
common::Error with_socket_hint(common::Error error) {
    if (error.message.find("--socket") == std::string::npos)
        error.message += " (serve the socket elsewhere with --socket PATH, or none with "
                         "--socket \"\")";
    return error;
}

// Plain HTTP only on loopback: elsewhere tokens and deployments would cross
// the network unencrypted.
common::Status check_plain_listen(const ListenAddress& address, const ServeOptions& options) {
    if (options.tls || common::is_loopback_host(address.host))
        return {};
    return common::make_error(
        common::ErrorKind::usage,
        fmt::format("refusing to serve the API in plain HTTP on {}: plain HTTP is only allowed "
                    "on a loopback address (127.0.0.1, ::1). Configure tls_cert and tls_key "
                    "(agent.toml, or --tls-cert FILE --tls-key FILE) to serve HTTPS there, or "
                    "keep --listen on 127.0.0.1 and reach the agent over SSH, through its unix "
                    "socket (deployctl's ssh:// hosts)",
                    options.listen));
}

// Loads the API's certificate and logs its fingerprint for clients to pin.
common::Result<std::shared_ptr<ApiCertificate>> load_api_certificate(const ServeOptions& options) {
    auto certificate = ApiCertificate::load(*options.tls);
    if (!certificate)
        return certificate.error();
    const auto& info = (*certificate)->current()->certificates().front();
    common::log_info("API certificate " + describe_api_certificate(info) +
                     " (deployctl can pin it: fingerprint = \"" + info.fingerprint +
                     "\" in deploy.toml)");
    if (info.not_after < std::chrono::system_clock::now())
        common::log_warn("the API certificate " + info.cert_path + " has expired");
    return certificate;
}

} // namespace

int serve(const ServeOptions& options) {
    const auto signals = block_stop_signals();
    auto address = parse_listen_address(options.listen);
    if (!address)
        return fail(address.error());
    if (auto ok = check_plain_listen(*address, options); !ok)
        return fail(ok.error());
    std::shared_ptr<ApiCertificate> api_certificate;
    if (options.tls) {
        auto loaded = load_api_certificate(options);
        if (!loaded)
            return fail(loaded.error());
        api_certificate = std::move(*loaded);
    }
    // deploy-proxy may listen on every address (":80", docs/agent-config.md); the API and
    // the metrics name theirs.
    if (auto proxy = parse_listen_address(options.proxy.listen, common::EmptyHost::allowed); !proxy)
        return fail(proxy.error());
    if (options.proxy.https()) {
        if (auto https =
                parse_listen_address(options.proxy.https_listen, common::EmptyHost::allowed);
            !https)
            return fail(https.error());
    }
    if (!options.proxy.certificates.empty()) {
        // A bad certificate stops the agent here, with the reason, rather than
        // leaving a proxy that cannot start.
        auto certificates = proxy::TlsCertificates::load(options.proxy.certificates);
        if (!certificates)
            return fail(certificates.error());
        const auto now = std::chrono::system_clock::now();
        for (const auto& info : (*certificates)->certificates())
            if (info.not_after < now)
                common::log_warn("the TLS certificate " + info.cert_path + " has expired");
    }
    const DataDir data_dir{fs::absolute(options.data_dir)};
    // Everything the agent, its proxy, builds and apps create is theirs alone
    // (0600 files, 0700 folders); the unix socket sets its own modes.
    ::umask(077);
    tighten_data_dir(data_dir);
    if (auto ok = create_layout(data_dir); !ok)
        return fail(ok.error());

    auto tokens = auth::AuthStore::open(data_dir.state_db());
    if (!tokens)
        return fail(tokens.error());
    if (auto admin = auth::ensure_admin_token(**tokens, data_dir.admin_token()); !admin)
        return fail(admin.error());
    else if (*admin)
        common::log_info(fmt::format("no API token existed: created an admin token for all apps "
                                     "in {} (mode 0600); deployctl reads it from "
                                     "DEPLOYCTL_TOKEN or its credentials file",
                                     data_dir.admin_token().string()));

    MinFree min_free;
    if (!options.min_free.empty()) {
        auto parsed = parse_min_free(options.min_free);
        if (!parsed)
            return fail(parsed.error());
        min_free = *parsed;
    }
    const DiskGuard disk(data_dir.root(), min_free);
    const auto app_ports = runtime::parse_port_range(options.app_ports);
    if (!app_ports)
        return fail(app_ports.error());
    if (const auto ephemeral = runtime::ephemeral_port_range();
        ephemeral && app_ports->overlaps(*ephemeral))
        common::log_warn(fmt::format(
            "app_ports {} overlaps the kernel's range for outgoing connections' ports, {} "
            "(net.ipv4.ip_local_port_range): a connection can take an app's port before the app "
            "listens on it; choose a range outside it",
            app_ports->text(), ephemeral->text()));
    const auto fetch_timeout = common::parse_duration(options.git_fetch_timeout);
    if (!fetch_timeout || fetch_timeout->count() <= 0)
        return fail(common::make_error(common::ErrorKind::usage,
                                       "--git-fetch-timeout must be a duration longer than 0s, "
                                       "e.g. 2m"));
    auto blob_store = std::make_shared<BlobStore>(data_dir.blobs());
    BlobStore& blobs = *blob_store;
    // What the API knows to be whole stays known through a collection that removed none of
    // it (set before the engine can collect).
    auto pending_nodes = std::make_shared<PendingNodes>();
    blobs.on_removed(
        [pending_nodes](const std::vector<BlobStore::Stored>& removed, std::uint64_t removals) {
            pending_nodes->removed(removed, removals);
        });
    if (auto stale = blobs.remove_stale_uploads())
        common::log_info(fmt::format("removed {} interrupted upload(s)", stale));
    ProxySettings proxy = options.proxy;
    if (proxy.threads == 0) // one deploy-proxy worker per CPU this agent may use (at most 1024)
        proxy.threads =
            std::min<unsigned>(runtime::usable_cpus(options.cgroup_root), k_max_proxy_threads);
    ServiceOptions service_options{data_dir,
                                   options.engine,
                                   proxy,
                                   options.proxy_bin.empty() ? default_proxy_bin()
                                                             : options.proxy_bin,
                                   options.engine_bin,
                                   options.container_network,
                                   options.max_runs_per_app,
                                   options.cgroup_root,
                                   blob_store,
                                   disk,
                                   *app_ports};
    auto service = make_service(std::move(service_options));
    ApiContext context{*service, blobs, data_dir};
    context.pending_nodes = pending_nodes;
    context.disk = disk;
    context.fetch_timeout = *fetch_timeout;
    if (api_certificate)
        context.tls_fingerprint = [api_certificate] { return api_certificate->fingerprint(); };
    context.auth = tokens->get();
    const Router router = make_router(context);
    auth::ThrottleSettings throttle_settings;
    throttle_settings.limit = options.failed_logins_per_minute;
    auth::LoginThrottle throttle(throttle_settings);
    AuthGate gate(**tokens, &throttle);
    ConnectionOptions connection_options{[&blobs] { return blobs.temp_path(); }, k_max_blob_size};
    connection_options.disk_check = [&disk](std::uint64_t bytes) {
        return disk.check(bytes, "this upload");
    };
    connection_options.gate = &gate;
    Server server(router, connection_options);
    if (auto ok = server.listen(*address); !ok)
        return fail(ok.error());
    if (api_certificate)
        server.use_tls(api_certificate);
    // The same API on the unix socket, for local users and for SSH (dial-stdio).
    Server local(router, connection_options);
    std::string socket = options.socket;
    if (!socket.empty()) {
        if (auto ok = local.listen_unix(socket); !ok) {
            // A user who may not write /run still gets a working agent when
            // nobody asked for a socket; one asked for must work.
            if (!options.socket_is_default || ::geteuid() == 0)
                return fail(with_socket_hint(ok.error()));
            common::log_warn(ok.error().message +
                             "; the API is served on TCP only (--socket PATH serves it on a "
                             "unix socket too, for SSH)");
            socket.clear();
        }
    }
    // git push to the agent (docs/git.md): its hook calls back on the socket.
    if (!socket.empty()) {
        std::error_code ec;
        const auto program = std::filesystem::read_symlink("/proc/self/exe", ec);
        if (auto hooks = git::write_hooks(data_dir, ec ? std::filesystem::path() : program); !hooks)
            common::log_warn("git push is not served: " + hooks.error().message);
        else
            context.socket = std::filesystem::absolute(socket);
    }
    // GET /metrics, no token (docs/metrics.md), on an address of its own.
    Router metrics_router;
    metrics_router.add(
        "GET", "/metrics",
        [&service](const Request&) {
            Response response;
            response.content_type = "text/plain; version=0.0.4; charset=utf-8";
            response.body = service->metrics();
            return response;
        },
        BodyKind::json, Access::open);
    ConnectionOptions metrics_options{[&blobs] { return blobs.temp_path(); }, 0};
    ServerLimits metrics_limits;
    metrics_limits.max_pending = 64;
    metrics_limits.max_pending_per_address = 16;
    metrics_limits.max_anonymous_workers = 4;
    Server metrics(metrics_router, metrics_options, metrics_limits);
    if (!options.metrics_listen.empty()) {
        auto metrics_address = parse_listen_address(options.metrics_listen);
        if (!metrics_address)
            return fail(metrics_address.error());
        if (auto ok = metrics.listen(*metrics_address); !ok)
            return fail(common::make_error(ok.error().kind, "metrics: " + ok.error().message));
    }
    if (auto ok = service->start(); !ok)
        return fail(ok.error());
    // For `deploy-agent down`: this process and its start time.
    if (auto written = common::atomic_write_file(
            data_dir.agent_pid(), fmt::format("{} {}\n", ::getpid(),
                                              runtime::process_start_time(::getpid()).value_or(0)));
        !written)
        common::log_warn("cannot write " + data_dir.agent_pid().string() + ": " +
                         written.error().message);

    std::thread acceptor([&server] { server.run(); });
    std::thread local_acceptor([&local, &socket] {
        if (!socket.empty())
            local.run();
    });
    std::thread metrics_acceptor([&metrics, &options] {
        if (!options.metrics_listen.empty())
            metrics.run();
    });
    if (!options.metrics_listen.empty())
        common::log_info(fmt::format(
            "metrics: GET http://{}:{}/metrics (Prometheus text)",
            options.metrics_listen.substr(0, options.metrics_listen.rfind(':')), metrics.port()));
    // ":80" listens on every address: said as 0.0.0.0:80.
    const auto every = [](const std::string& listen) {
        return !listen.empty() && listen.front() == ':' ? "0.0.0.0" + listen : listen;
    };
    const std::string https = every(service->proxy_https_listen());
    const std::string proxy_listen = every(options.proxy.listen);
    std::fprintf(stderr,
                 "deploy-agent ready: api %s://%s:%u%s%s, proxy http://%s%s%s, engine %s, "
                 "data %s\n",
                 api_certificate ? "https" : "http", address->host.c_str(), server.port(),
                 socket.empty() ? "" : " and unix:", socket.c_str(), proxy_listen.c_str(),
                 https.empty() ? "" : " https://", https.c_str(), service->engine().c_str(),
                 data_dir.root().c_str());
    int signal = 0;
    // Each second: the log line and audit row of each address whose minute of
    // failed logins has ended, so the last minute of an attack is said too.
    const auto report_failed_logins = [&gate] { gate.report_due(); };
    while ((signal = wait_for_signal(signals, report_failed_logins)) == SIGHUP)
        if (api_certificate)
            api_certificate->current(); // loads the files if they changed, and logs it
    common::log_info(
        fmt::format("received {}, stopping", signal == SIGTERM ? "SIGTERM" : "SIGINT"));
    server.stop();
    local.stop();
    metrics.stop();
    acceptor.join();
    local_acceptor.join();
    metrics_acceptor.join();
    service->stop();
    std::error_code removed;
    fs::remove(data_dir.agent_pid(), removed);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    const auto left = [&deadline] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
    };
    const bool idle =
        server.wait_idle(left()) && local.wait_idle(left()) && metrics.wait_idle(left());
    gate.report_all(); // the minute under way, not lost with the process
    if (!idle) {
        // A handler still runs (e.g. a rollback waiting for a health check):
        // leave without destroying what it uses. Apps and the proxy keep running.
        common::log_warn("connections still busy; exiting without waiting for them");
        std::fflush(stderr);
        std::_Exit(0);
    }
    return 0;
}

} // namespace agent::api
