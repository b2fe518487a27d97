#pragma once
// What deploy-proxy counts, per app: requests by method and status class, their
// durations, bytes in and out, requests in flight, open WebSockets, upstream
// connect errors and retries; and the client connections. One Stats per
// worker (its thread records; the server's timer reads under the same
// uncontended lock), merged into DATA_DIR/proxy/stats.json each second for
// the agent's GET /metrics (docs/metrics.md).

#include <nlohmann/json_fwd.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace agent::proxy {

// Methods counted by name; any other is "other".
inline constexpr std::array<std::string_view, 8> k_stat_methods{
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"};
// Upper bounds of the request duration histogram, in seconds.
inline constexpr std::array<double, 11> k_stat_buckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                       0.5,   1,    2.5,   5,    10};

struct AppStats {
    // [method][status class 1xx..5xx]
    std::array<std::array<std::uint64_t, 5>, k_stat_methods.size()> requests{};
    std::array<std::uint64_t, k_stat_buckets.size()> buckets{}; // cumulative counts
    std::uint64_t count = 0;
    double seconds = 0;
    std::uint64_t bytes_in = 0;  // request bodies received from clients
    std::uint64_t bytes_out = 0; // response bodies sent to clients
    std::uint64_t connect_errors = 0;
    std::uint64_t retries = 0;
    std::int64_t in_flight = 0;  // gauge
    std::int64_t websockets = 0; // gauge

    void add(const AppStats& other);
};

// The q-quantile (0.95: p95) of the durations counted, in seconds, estimated
// from the histogram by linear interpolation inside the bucket it falls in
// (as Prometheus' histogram_quantile); the last bound past it; 0 when empty.
double stat_quantile(const AppStats& stats, double q);
// The requests answered 5xx, whatever their method.
std::uint64_t stat_5xx(const AppStats& stats);

class Stats {
  public:
    void request_started(const std::string& app);
    // A request routed to `app` ended: its answer's status (0: none was sent).
    void request_ended(const std::string& app, std::string_view method, int status, double seconds,
                       std::uint64_t bytes_in, std::uint64_t bytes_out);
    // The same request counted for its release too ("APP RELEASE"), when the
    // app has a canary (its two sides compared by deployctl canary).
    void release_ended(const std::string& key, std::string_view method, int status, double seconds);
    void connect_error(const std::string& app);
    void retry(const std::string& app);
    void websocket(const std::string& app, int change); // +1 opened, -1 closed
    void connection(int change);                        // client connections

    // The figures so far, added to `into`.
    void add_to(std::map<std::string, AppStats>& into, std::int64_t& connections) const;
    void add_releases_to(std::map<std::string, AppStats>& into) const;
    // This worker's own figures: requests answered, client connections open.
    struct Worker {
        std::uint64_t requests = 0;
        std::int64_t connections = 0;
    };
    Worker worker() const;

  private:
    mutable std::mutex m_mutex;
    std::map<std::string, AppStats, std::less<>> m_apps;
    std::map<std::string, AppStats, std::less<>> m_releases; // "APP RELEASE"
    std::int64_t m_connections = 0;
    std::uint64_t m_requests = 0;
};

// The JSON the agent reads: {"instance": "...", "connections": N, "apps": {APP: {...}}},
// and "releases": {"APP RELEASE": {...}} for the apps with a canary.
nlohmann::json stats_json(const std::string& instance, const std::map<std::string, AppStats>& apps,
                          std::int64_t connections);
// Its inverse, for the agent; unknown or malformed fields read as 0.
std::map<std::string, AppStats> apps_from_json(const nlohmann::json& apps);
// Writes `text` to `path` through a temporary file and a rename (no fsync: a
// snapshot rewritten each second).
bool write_snapshot(const std::filesystem::path& path, const std::string& text);

} // namespace agent::proxy
