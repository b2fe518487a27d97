// deploy-proxy: routes HTTP requests to the running releases by Host header.
#include <CLI/CLI.hpp>
#include <agent/proxy/server.hpp>
#include <common/log.hpp>
#include <common/version.hpp>

#include <cstdio>

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
    app.add_option("--threads", threads, "Worker threads, each with its own event loop")
        ->check(CLI::Range(1u, 64u))
        ->capture_default_str();
    app.add_option("--log-level", log_level, "debug, info, warn or error")
        ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
        ->capture_default_str();
    auto* version = app.add_subcommand("version", "Print the version and exit");
    app.footer("Signals: SIGHUP reloads the routing table; SIGTERM/SIGINT stop accepting, finish\n"
               "requests under way (up to 10s) and exit 0.");
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
    agent::proxy::ServerOptions options{*address, routes, applied, threads, listen_fd};
    if (options.applied.empty()) {
        options.applied = options.routes.parent_path() / "applied";
    }
    return agent::proxy::run_server(options);
}
