// deploy-proxy: routes HTTP requests to the running releases by Host header.
#include <CLI/CLI.hpp>
#include <agent/proxy/server.hpp>
#include <common/duration.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>
#include <common/version.hpp>

#include <cctype>
#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    CLI::App app{"deploy-proxy: the HTTP front door of deploy-agent.\n"
                 "Routes each request by its Host header to the release the agent made live,\n"
                 "reloads the routing table on SIGHUP or when the file changes, and drains\n"
                 "connections on SIGTERM.",
                 "deploy-proxy"};
    std::string listen = "127.0.0.1:8080";
    std::string routes;
    std::string applied;
    unsigned threads = 1;
    int listen_fd = -1;
    std::string log_level = "info";
    std::string tls_listen = "127.0.0.1:8443";
    int tls_listen_fd = -1;
    std::vector<std::string> certs;
    std::vector<std::string> keys;
    bool redirect_https = false;
    std::string acme_dir;
    bool on_demand_tls = false;
    std::string probe_key_file;
    std::string access_log_dir;
    std::string access_log_max_size = "64M";
    app.add_option("--listen", listen, "Address to serve on, IP:PORT ([::1]:PORT, :PORT for all)")
        ->capture_default_str();
    app.add_option("--routes", routes,
                   "Routing table written by the agent (DATA_DIR/proxy/routes.json)");
    app.add_option("--applied", applied,
                   "Where to write the generation now live (default: applied beside --routes)");
    app.add_option("--listen-fd", listen_fd,
                   "Serve on this inherited listening socket instead of binding --listen (the "
                   "agent passes one it keeps, so a restart refuses no connection)")
        ->check(CLI::Range(3, 1 << 20));
    app.add_option("--tls-cert", certs,
                   "TLS certificate chain (PEM), repeatable; turns HTTPS on. Each client gets the "
                   "certificate whose names cover the host it asks for (SNI), else the first")
        ->type_name("PATH");
    app.add_option("--tls-key", keys, "Private key (PEM) of the --tls-cert at the same position")
        ->type_name("PATH");
    app.add_option("--tls-listen", tls_listen, "Address to serve HTTPS on, IP:PORT")
        ->capture_default_str();
    app.add_option("--tls-listen-fd", tls_listen_fd,
                   "Serve HTTPS on this inherited listening socket instead of binding --tls-listen")
        ->check(CLI::Range(3, 1 << 20));
    app.add_option("--acme-dir", acme_dir,
                   "The agent's ACME files (DATA_DIR/acme); turns HTTPS on. certs/NAME.crt and "
                   "NAME.key: a certificate for NAME (_.DOMAIN for *.DOMAIN), after the "
                   "--tls-cert ones (one that does not load is logged and left out); "
                   "tls-alpn-01/NAME.crt and NAME.key: the certificate a client offering ALPN "
                   "acme-tls/1 for NAME gets; http-01/TOKEN: the answer to GET "
                   "/.well-known/acme-challenge/TOKEN, for any host, on both listeners")
        ->type_name("DIR");
    app.add_flag("--on-demand-tls", on_demand_tls,
                 "With --acme-dir: a TLS handshake for a name no certificate covers sends the "
                 "name to the agent (certificate.sock beside --routes) and waits up to 25s for "
                 "its certificate");
    app.add_flag("--redirect-https", redirect_https,
                 "Answer plain HTTP requests for a host a certificate covers with a 308 redirect "
                 "to https (ACME http-01 challenges excepted)");
    app.add_option("--probe-key", probe_key_file,
                   "File holding the agent's probe key: a request with that key in X-Deploy-Probe "
                   "is never redirected and its answer names the release that served it in "
                   "X-Deploy-Routed (the agent's proof that a release is live)")
        ->type_name("PATH");
    app.add_option("--access-log-dir", access_log_dir,
                   "Write each app's access log, one JSON object per request, to "
                   "DIR/APP/logs/access.ndjson (when DIR/APP/logs exists; the agent passes "
                   "DATA_DIR/apps)")
        ->type_name("DIR");
    app.add_option("--access-log-max-size", access_log_max_size,
                   "Past this size an access log becomes access.ndjson.1 and a new one starts "
                   "(e.g. 64M, 1G; 0: never)")
        ->capture_default_str();
    app.add_option("--threads", threads, "Worker threads, each with its own event loop")
        ->check(CLI::Range(1u, 1024u))
        ->capture_default_str();
    app.add_option("--log-level", log_level, "debug, info, warn or error")
        ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
        ->capture_default_str();
    auto* version = app.add_subcommand("version", "Print the version and exit");
    app.footer(
        "Signals: SIGHUP reloads the routing table and certificate files that changed (both\n"
        "are also checked every 250 ms; under --acme-dir, a certificate added or removed\n"
        "counts too); SIGTERM/SIGINT stop accepting, finish requests under way (up to\n"
        "10s) and exit 0.");
    CLI11_PARSE(app, argc, argv);

    if (version->parsed()) {
        std::printf("deploy-proxy %s\n", common::version());
        return 0;
    }
    if (routes.empty()) {
        std::fprintf(stderr, "deploy-proxy: --routes is required\n%s", app.help().c_str());
        return 2;
    }
    common::set_log_level(log_level == "debug"   ? common::LogLevel::debug
                          : log_level == "warn"  ? common::LogLevel::warn
                          : log_level == "error" ? common::LogLevel::error
                                                 : common::LogLevel::info);
    auto address = common::parse_host_port(listen, common::EmptyHost::allowed);
    if (!address) {
        std::fprintf(stderr, "deploy-proxy: --listen: %s\n", address.error().message.c_str());
        return 2;
    }
    if (certs.size() != keys.size()) {
        std::fprintf(stderr,
                     "deploy-proxy: %zu --tls-cert but %zu --tls-key: give one key per "
                     "certificate\n",
                     certs.size(), keys.size());
        return 2;
    }
    if (on_demand_tls && acme_dir.empty()) {
        std::fprintf(stderr, "deploy-proxy: --on-demand-tls needs --acme-dir (where the agent "
                             "writes the certificates it gets)\n");
        return 2;
    }
    auto max_size = common::parse_size(access_log_max_size);
    if (!max_size) {
        std::fprintf(stderr, "deploy-proxy: --access-log-max-size: %s\n",
                     max_size.error().message.c_str());
        return 2;
    }
    agent::proxy::ServerOptions options;
    options.access_log_dir = access_log_dir;
    options.access_log_max_size = *max_size;
    options.listen = *address;
    options.routes = routes;
    options.applied = applied;
    options.threads = threads;
    options.listen_fd = listen_fd;
    if (!certs.empty() || !acme_dir.empty()) {
        auto tls_address = common::parse_host_port(tls_listen, common::EmptyHost::allowed);
        if (!tls_address) {
            std::fprintf(stderr, "deploy-proxy: --tls-listen: %s\n",
                         tls_address.error().message.c_str());
            return 2;
        }
        options.tls_listen = *tls_address;
        options.tls_listen_fd = tls_listen_fd;
        for (std::size_t i = 0; i < certs.size(); ++i) {
            options.certificates.push_back({certs[i], keys[i]});
        }
        options.redirect_https = redirect_https;
        options.acme_dir = acme_dir;
        options.on_demand_tls = on_demand_tls;
    }
    if (!probe_key_file.empty()) {
        auto key = common::read_file(probe_key_file);
        while (key && !key->empty() && std::isspace(static_cast<unsigned char>(key->back()))) {
            key->pop_back();
        }
        if (!key || key->empty()) {
            // Serving goes on; the agent's probes fail and name this log.
            common::log_warn("cannot read the probe key " + probe_key_file + ": " +
                             (key ? std::string("empty file") : key.error().message) +
                             "; no request is taken as the agent's probe");
        } else {
            options.probe_key = std::move(*key);
        }
    }
    if (options.applied.empty()) {
        options.applied = options.routes.parent_path() / "applied";
    }
    return agent::proxy::run_server(options);
}
