#pragma once
// agent.toml: deploy-agent's own configuration (docs/agent-config.md). Every
// key is optional; a command-line flag wins over the file. toml++ stays in
// config.cpp.

#include <agent/proxy/tls_certificates.hpp>
#include <common/result.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agent {

struct AgentConfig {
    std::optional<std::string> data_dir;
    std::optional<std::string> listen;
    std::optional<std::string> socket;
    std::optional<std::string> engine;
    std::optional<std::string> engine_bin;
    std::optional<std::string> container_network;
    std::optional<std::string> cgroup_root;
    std::optional<std::string> proxy_bin;
    std::optional<std::string> metrics_listen;
    std::optional<int> failed_logins_per_minute;
    std::optional<int> max_runs_per_app;
    std::optional<int> proxy_threads;             // 0: one per usable CPU
    std::optional<std::string> min_free;          // checked by parse_min_free
    std::optional<std::string> git_fetch_timeout; // a duration
    std::optional<std::string> app_ports;         // "LOW-HIGH"
    // The API's TLS certificate and key, both or neither (resolved like the
    // proxy's certificates).
    std::optional<proxy::CertificateFiles> tls;
    // [proxy]
    std::optional<std::string> proxy_listen;
    std::optional<std::string> proxy_https_listen;
    std::optional<bool> redirect_https;
    std::optional<bool> access_log;                   // each app's access log (default on)
    std::optional<std::uint64_t> access_log_max_size; // rotated past it
    // [[proxy.certificates]], relative paths resolved against the file's directory
    std::vector<proxy::CertificateFiles> certificates;
    // [acme]: certificates from an ACME server (docs/tls.md); present = on.
    struct Acme {
        std::optional<std::string> directory;
        std::optional<std::string> ca_file; // resolved against the file's directory
        std::optional<std::string> email;
        std::optional<std::string> eab_kid;
        std::optional<std::string> eab_hmac_key;
        std::optional<std::vector<std::string>> challenges;
        std::optional<std::string> dns_hook;
        std::optional<bool> on_demand;
        std::optional<std::string> ask;
        std::optional<std::chrono::milliseconds> retry;
    };
    std::optional<Acme> acme;
};

// Errors are ErrorKind::config: "SOURCE:LINE:COL: message", the line and a
// caret, and for an unknown key the closest valid one.
common::Result<AgentConfig> parse_agent_config(std::string_view text, std::string_view source,
                                               const std::filesystem::path& base_dir);
common::Result<AgentConfig> load_agent_config(const std::filesystem::path& path);

} // namespace agent
