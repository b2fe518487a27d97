#pragma once
// The deploy-proxy process: workers, routing table and certificate reloads
// (SIGHUP and a 250 ms file check), graceful SIGTERM. Only main.cpp includes this.

#include <agent/proxy/tls_certificates.hpp>
#include <common/address.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

namespace agent::proxy {

struct ServerOptions {
    common::HostPort listen;
    std::filesystem::path routes;
    std::filesystem::path applied;
    unsigned threads = 1;
    // A listening socket inherited from the agent (-1: bind `listen` here).
    // The agent keeps its own copy, so connections wait in the backlog while
    // a crashed proxy is restarted instead of being refused.
    int listen_fd = -1;

    // HTTPS, on when `certificates` or `acme_dir` is given: served on
    // `tls_listen` (or the inherited `tls_listen_fd`), each client getting the
    // certificate that covers the name it asks for. The files are read again
    // on SIGHUP and when they change; a bad set keeps the previous one.
    std::optional<common::HostPort> tls_listen;
    int tls_listen_fd = -1;
    std::vector<CertificateFiles> certificates;
    // The agent's ACME files (acme.hpp): its certificates (after
    // `certificates`; one that does not load is left out), its TLS-ALPN-01
    // and http-01 challenges. Empty: none.
    std::filesystem::path acme_dir;
    // With acme_dir: a handshake for a name no certificate covers asks the
    // agent for one on certificate.sock beside `routes`, and waits for it
    // (on_demand.hpp).
    bool on_demand_tls = false;
    // Plain HTTP requests for a host a certificate covers get 308 to https.
    bool redirect_https = false;
    // The agent's probe key (docs/design.md §8): a request carrying it in
    // X-Deploy-Probe is never redirected, and its answer names the release
    // that served it in X-Deploy-Routed. Empty: no request is a probe.
    std::string probe_key;
    // Each app's access log goes to access_log_dir/APP/logs/access.ndjson
    // (empty: none), rotated past access_log_max_size bytes (0: never).
    std::filesystem::path access_log_dir;
    std::uint64_t access_log_max_size = 0;
};

// Serves until SIGTERM or SIGINT, then drains. Returns the exit code.
int run_server(const ServerOptions& options);

} // namespace agent::proxy
