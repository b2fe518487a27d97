#pragma once
// The proxy's routing table (docs/api.md, "Proxy routing table"): which app
// release answers for which Host header. Pure logic: no sockets here.

#include <agent/proxy/limits.hpp>
#include <common/result.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace agent::proxy {

// One address an app route forwards to.
struct Upstream {
    std::string key;     // "127.0.0.1:41234", as written; also the keep-alive pool key
    std::string address; // "127.0.0.1" (IP literal, no brackets)
    std::uint16_t port = 0;
    std::string name; // "web.2" ("instances" in routes.json); empty when not given
};

// At most this many upstreams per route ("upstreams" in routes.json).
constexpr std::size_t k_max_upstreams = 64;

// What the workers of one proxy share about a route with several upstreams:
// the round-robin counter and, per upstream, until when it is skipped after a
// failed connect (passive health). Lock-free; lives as long as the table (and
// the requests it still routes), so a new table starts afresh.
struct Balance {
    explicit Balance(std::size_t upstreams) : down_until(upstreams) {}
    std::atomic<std::uint32_t> next{0};
    // steady_clock ticks since its epoch; 0 (the past): not failing.
    std::vector<std::atomic<std::int64_t>> down_until;
};

// How long an upstream that failed a connect is left out of round robin
// (like nginx's max_fails=1 fail_timeout=1s).
constexpr auto k_fail_timeout = std::chrono::seconds(1);

// deployctl maintenance on: what the proxy answers every request of the app
// with (but the agent's probes). Shared by the copies of a route.
// The answers are made when the table is loaded, not per request.
struct Maintenance {
    std::string message;           // the operator's text; may be empty
    std::uint64_t retry_after = 0; // seconds, sent as Retry-After; 0: none
    // What a browser gets: the release's maintenance.html (at most
    // k_max_maintenance_page bytes), else the built-in page with the message.
    std::string page;
    // What a client that accepts only JSON gets:
    // {"error": MESSAGE, "maintenance": true[, "retry_after": N]}.
    std::string json;
};
constexpr std::size_t k_max_maintenance_page = 1024 * 1024;

struct Route {
    using Clock = std::chrono::steady_clock;

    std::string host; // normalized (see normalize_host)
    std::string app;
    std::string release;
    // An app route forwards to its `upstreams` (1..k_max_upstreams, distinct:
    // "upstream" or "upstreams" in routes.json); a static route (a [static]
    // release) is served from the files under `static_root` instead. A route
    // has exactly one of the two.
    std::vector<Upstream> upstreams;
    // The first of `upstreams` (empty for a static or stopped route): the
    // one-upstream form's address, for code that knows only one.
    std::string upstream;
    std::string upstream_address;
    std::uint16_t upstream_port = 0;
    // Set when there are several upstreams; shared by the copies of the route.
    std::shared_ptr<Balance> balance;
    std::string static_root; // absolute directory; need not exist when the table loads
    bool spa = false;        // unknown extension-less paths answer with /index.html
    // deployctl stop: neither upstream nor static_root; the proxy answers 503.
    bool stopped = false;
    // deployctl scale web=0 ("stopped": "scaled"): the same, with its own page.
    bool scaled_to_zero = false;
    // Set: deployctl maintenance on ("maintenance" in routes.json); any kind of route.
    std::shared_ptr<const Maintenance> maintenance;
    // deployctl pause ("pause": {"timeout_ms": N}): a request waits at the
    // proxy until a table without the pause routes it, at most this long
    // (then 503). Zero: not paused.
    std::chrono::milliseconds pause{0};
    // [deploy] idle_stop ("sleeping": {"timeout_ms": N[, "error": TEXT]}): the
    // app's web process was stopped for want of requests; a request asks the
    // agent to start it (Worker::wake) and waits until a table routes it, at most
    // `wake` (then 503). After a start failed (`wake_error`), requests are
    // answered 503 at once and still ask for another start. Zero: awake.
    std::chrono::milliseconds wake{0};
    // After a failed start: the answers, made when the table loads (text, and
    // {"error": ...} for a client that accepts only JSON); empty: none failed.
    std::string wake_error;
    std::string wake_error_json;
    // An app route's "limits" (deploy.toml [proxy]): the largest request body
    // (0 = unlimited), and how long to connect to an instance, wait on it, and
    // keep an upgraded connection that moves no byte.
    std::uint64_t max_body = k_default_max_body;
    std::chrono::milliseconds connect_timeout = k_connect_timeout;
    std::chrono::milliseconds read_timeout = k_upstream_timeout;
    std::chrono::milliseconds websocket_idle = k_websocket_idle;

    // deployctl deploy --canary (routes.json "canary"): the CANARY release's
    // side of this route (the same host, app and limits; its own release and
    // upstreams) and the percentage of clients it takes; nullptr: no canary.
    std::shared_ptr<const Route> canary{};
    unsigned canary_percent = 0;

    bool is_static() const { return !static_root.empty(); }
    bool paused() const { return pause.count() > 0; }
    bool sleeping() const { return wake.count() > 0; }

    // Balancing (thread-safe: any worker may call these on a shared table).
    // The upstream for a new request: round robin over those not failing,
    // over all of them when all are failing.
    std::size_t pick(Clock::time_point now = Clock::now()) const;
    // After `current` failed: the next upstream, in round-robin order after
    // it, whose bit is not set in `tried` (bit i: upstream i), preferring
    // those not failing; nullopt when all were tried.
    std::optional<std::size_t> next_untried(std::size_t current, std::uint64_t tried,
                                            Clock::time_point now = Clock::now()) const;
    // Upstream `index` failed a connect: round robin skips it for k_fail_timeout.
    void mark_failed(std::size_t index, Clock::time_point now = Clock::now()) const;
    bool failing(std::size_t index, Clock::time_point now = Clock::now()) const;
};

class RouteTable {
  public:
    RouteTable() = default;
    // Routes must have distinct normalized hosts (parse_routes checks).
    RouteTable(std::uint64_t generation, std::vector<Route> routes);

    std::uint64_t generation() const { return m_generation; }
    std::size_t size() const { return m_routes.size(); }
    const std::vector<Route>& routes() const { return m_routes; }
    // `host` must already be normalized. nullptr when no app is deployed there.
    const Route* find(std::string_view host) const;

  private:
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const {
            return std::hash<std::string_view>{}(s);
        }
    };
    std::uint64_t m_generation = 0;
    std::vector<Route> m_routes;
    std::unordered_map<std::string, std::size_t, Hash, std::equal_to<>> m_index;
    bool m_wildcards = false; // some route's host is "*.DOMAIN"
};

// Host header value → lookup key: lower case, ":port" and one trailing dot
// removed ("Hello.Localhost.:8080" → "hello.localhost"). Writes "" into `out`
// when the value cannot be a host name. Reuses `out`'s capacity (hot path).
void normalize_host(std::string_view host, std::string& out);
std::string normalize_host(std::string_view host);

// Canary releases: which side a request goes to (docs/api.md, "Proxy routing
// table"). The cookie's name and its value for a side: "v5:c" (canary) or
// "v5:p" (production).
inline constexpr std::string_view k_canary_cookie = "deploy_canary";
// The header that names a client for the split when several share an address.
inline constexpr std::string_view k_canary_client_field = "X-Deploy-Client";
// The side a Cookie header (every cookie of it) keeps the client on: true for
// the canary, false for production; nullopt when it has no deploy_canary
// cookie for `release` (another release's cookie does not count).
std::optional<bool> canary_cookie_side(std::string_view cookies, std::string_view release);
// The side of a client without a cookie: a hash of `client` (its X-Deploy-Client
// value, else its address) placed in 0..99, below `percent` for the canary.
bool canary_hash_side(std::string_view client, unsigned percent);

// Parses a routes.json document. `source` names it in error messages.
common::Result<RouteTable> parse_routes(std::string_view json, std::string_view source);

} // namespace agent::proxy
