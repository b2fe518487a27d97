#pragma once
// `deploy-agent serve`: data dir, Service, HTTP API, signals.

#include <agent/api/unix_socket.hpp>
#include <agent/deploy/service.hpp>
#include <agent/proxy/tls_certificates.hpp>

#include <optional>
#include <string>

namespace agent::api {

struct ServeOptions {
    std::string data_dir = "/var/lib/deploy-agent";
    std::string listen = "127.0.0.1:7070";
    // The API over HTTPS with this pair; without it, `listen` must be loopback.
    std::optional<proxy::CertificateFiles> tls;
    std::string socket = k_default_socket; // empty: no unix socket
    // Neither --socket nor agent.toml chose it: a non-root agent that cannot
    // create the default socket goes on without one (a warning).
    bool socket_is_default = true;
    ProxySettings proxy; // where and how deploy-proxy serves the apps
    std::string engine = "auto";
    std::string engine_bin; // docker/podman CLI, default: on PATH
    std::string container_network = "host";
    std::string cgroup_root = "/sys/fs/cgroup"; // the process engine's limits
    std::string proxy_bin;                      // empty: deploy-proxy beside this executable
    // Failed token checks a minute from one TCP address before it gets 429
    // (docs/security.md, "Failed logins"); 0: counted and logged, never refused.
    int failed_logins_per_minute = 20;
    // GET /metrics (Prometheus text, no token) on this address; empty: off.
    std::string metrics_listen;
    int max_runs_per_app = 4; // deployctl run
    // Kept free on the data dir's disk: uploads and builds that would eat
    // into it are refused up front (agent/store/disk.hpp). Empty: the default,
    // the smaller of 1 GiB and 5%.
    std::string min_free;
    std::string git_fetch_timeout = "2m"; // a webhook's fetch (docs/git.md)
    // The ports apps are given ($PORT), "LOW-HIGH" (agent/runtime/ports.hpp).
    std::string app_ports = "10000-19999";
};

// Runs until SIGTERM or SIGINT; returns the process exit code.
int serve(const ServeOptions& options);

} // namespace agent::api
