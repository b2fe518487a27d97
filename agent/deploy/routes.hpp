#pragma once
// The proxy routing table (docs/api.md "Proxy routing table").

#include <common/config.hpp>
#include <common/result.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace agent {

struct Route {
    std::string host;
    std::string app;
    std::string release;
    std::string upstream; // "127.0.0.1:PORT" for an app; empty for a static site
    // A [static] release: the proxy serves the files under this absolute
    // directory itself (RELEASE_DIR/static.dir), with the SPA fallback if `spa`.
    std::string static_root{}; // (initialized: {host, app, release, upstream} stays valid)
    bool spa = false;
    // deployctl stop: the proxy answers 503 "APP is stopped" (no upstream, no root).
    bool stopped = false;
    // Several web instances (deployctl scale web=N): every address, `upstream`
    // being the first; empty for one.
    std::vector<std::string> upstreams{};
    // The name of each address ("web.1", ...), in the same order: one for
    // `upstream` alone, one per `upstreams`; empty: unnamed.
    std::vector<std::string> instances{};
    // deployctl scale web=0: the proxy answers 503 "APP is scaled to zero".
    bool scaled_to_zero = false;
    // deploy.toml [proxy] of an app route: body limit and timeouts ("limits").
    common::AppProxySettings limits{};
    // deployctl maintenance on: 503 with this message, Retry-After (seconds,
    // 0: none) and the release's maintenance.html when `maintenance_page` is set.
    bool maintenance = false;
    std::string maintenance_message{};
    std::int64_t retry_after = 0;
    std::string maintenance_page{};
    // deployctl pause: requests wait at the proxy, at most this long (0: not paused).
    std::int64_t pause_timeout_ms = 0;
    // [deploy] idle_stop: the app sleeps; deploy-proxy holds a request at most
    // this long while the agent starts it (0: awake), or answers 503 with
    // `wake_error` after a failed start.
    std::int64_t wake_timeout_ms = 0;
    std::string wake_error{};
    // deployctl deploy --canary: the CANARY release that takes `canary_percent`
    // of the traffic (routes.json "canary"), its web addresses and their names.
    std::string canary_release{};
    int canary_percent = 0;
    std::vector<std::string> canary_upstreams{};
    std::vector<std::string> canary_instances{};
};

// "APP.localhost" plus every domain of every target, without duplicates.
std::vector<std::string> route_hosts(const std::string& app, const common::AppConfig& config);
std::string routing_table_json(std::uint64_t generation, const std::vector<Route>& routes);
// The generation in a routes.json or applied file: a JSON object with
// "generation" or a bare number. 0 when missing or unreadable.
std::uint64_t read_generation(const std::filesystem::path& file);
// The same, telling a file that cannot be read (an error) from a missing one (0).
common::Result<std::uint64_t> generation_in(const std::filesystem::path& file);

// How long publishing a table may take (docs/reliability.md).
struct PublishLimits {
    int write_attempts = 5;                      // each one a new generation
    std::chrono::milliseconds write_retry{100};  // pause after a failed write
    std::chrono::milliseconds ack_timeout{3000}; // for the proxy's acknowledgement
    std::chrono::milliseconds resignal{500};     // signal again while waiting
    std::chrono::milliseconds poll{5};           // reading the applied file
};

// Publishes routing tables to deploy-proxy and knows when the proxy serves one
// (docs/design.md §7, docs/reliability.md): a table is written to routes.json
// atomically with the next generation number, the proxy is signalled, and the
// table is published only once the proxy's applied file names that generation
// (or a later one: only this publisher writes tables, and generations grow):
// the proxy writes it once every worker routes with that table. A failed
// write is tried again, each time as a new generation (a failed attempt may
// still have reached the proxy); no acknowledgement within the bound is an
// error. Not thread-safe: the engine serializes publishes.
class RoutePublisher {
  public:
    struct Steps {
        // Writes a file atomically (common::atomic_write_file).
        std::function<common::Status(const std::filesystem::path&, std::string_view)> write;
        // Asks the proxy to load the table (SIGHUP); called again while waiting.
        std::function<void()> signal;
        // false when no proxy runs (the engine's tests): writing is publishing.
        std::function<bool()> acknowledges;
        // Where to look when the proxy does not answer (its log), for the message.
        std::string proxy_log{};
    };
    RoutePublisher(std::filesystem::path routes, std::filesystem::path applied, Steps steps,
                   PublishLimits limits = {});

    // Ok once the proxy applied the table; else the error names the step that
    // failed: ErrorKind::io "cannot write the routing table ...: cannot fsync
    // ...: Input/output error" (the table is not there), ErrorKind::timeout
    // "deploy-proxy did not acknowledge ..." (it is there, not confirmed).
    common::Status publish(const std::vector<Route>& routes);
    // The generation of the last table written or tried (0: none yet).
    std::uint64_t generation() const { return m_generation; }

  private:
    // The first publish continues after the generations on disk.
    common::Status load_generation();
    common::Status wait_acknowledged(std::uint64_t generation) const;

    std::filesystem::path m_routes;
    std::filesystem::path m_applied;
    Steps m_steps;
    PublishLimits m_limits;
    bool m_loaded = false;
    std::uint64_t m_generation = 0;
};

} // namespace agent
