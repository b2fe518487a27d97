// [deploy] idle_stop, scale to zero (docs/traffic.md): an app that deploy-proxy
// saw no request for that long goes to sleep (its web process stopped, its
// [processes] too with idle_stop_workers; the release stays PRODUCTION). The
// proxy holds the next request and sends the app's name to DATA_DIR/proxy/
// wake.sock; the agent starts the release, health-checks it and publishes a
// table that routes it, which releases the held requests.
#include <agent/deploy/engine.hpp>
#include <agent/runtime/socket_io.hpp>
#include <common/duration.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace agent {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using common::ErrorKind;
using common::make_error;

namespace {
// A failed wake-up is tried again, on the next request, after 0.5 s, then 1 s,
// 2 s, ... up to k_wake_backoff_max.
constexpr std::chrono::milliseconds k_wake_backoff_first{500};
constexpr std::chrono::milliseconds k_wake_backoff_max{30000};
// stats.json is rewritten each second; read again at most this often.
constexpr std::chrono::milliseconds k_stats_fresh{400};

std::string ms_text(Clock::duration d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}
} // namespace

std::chrono::milliseconds Engine::wake_timeout(const common::AppConfig& config) {
    // The start and its health checks, with room for the engine (a container).
    return config.run.health.timeout + std::chrono::seconds(30);
}

bool Engine::sleeping(const std::string& app, const common::AppConfig& config) {
    return config.deploy.idle_stop.count() > 0 && config.has_web() && !config.static_site &&
           m_store->traffic(app).sleeping;
}

void Engine::clear_sleeping(const std::string& app) {
    if (!m_store->traffic(app).sleeping)
        return;
    if (auto awake = db_write([&] { return m_store->set_sleeping(app, false); }); !awake)
        common::log_error(app + ": " + awake.error().message);
    {
        std::lock_guard lock(m_routes_mutex);
        m_wake_errors.erase(app);
    }
    std::lock_guard lock(m_mutex);
    m_activity.erase(app); // a full idle_stop from now
    m_backoff.erase("wake " + app);
}

std::optional<std::uint64_t> Engine::read_proxy_stats() {
    m_seen_stats.instance.clear();
    m_seen_stats.apps.clear();
    auto text = common::read_file(m_options.data_dir.proxy_dir() / "stats.json");
    if (!text)
        return 0;
    auto json = nlohmann::json::parse(*text, nullptr, false);
    if (!json.is_object() || !json.contains("instance") || !json["instance"].is_string())
        return 0;
    m_seen_stats.instance = json["instance"];
    m_seen_stats.apps = proxy::apps_from_json(json.value("apps", nlohmann::json::object()));
    const auto routes = json.find("routes");
    if (routes == json.end())
        return std::nullopt; // a deploy-proxy from before it was written (adopted)
    return routes->is_number_unsigned() ? routes->get<std::uint64_t>() : 0;
}

std::string Engine::activity_seen(const std::string& app) const {
    // What changes with any request: the proxy's run and the app's count.
    const auto it = m_seen_stats.apps.find(app);
    return m_seen_stats.instance + " " +
           std::to_string(it == m_seen_stats.apps.end() ? 0 : it->second.count);
}

bool Engine::app_busy(const std::string& app) const {
    const auto it = m_seen_stats.apps.find(app);
    return it != m_seen_stats.apps.end() && (it->second.in_flight > 0 || it->second.websockets > 0);
}

void Engine::sleep_if_idle(const ReleaseRow& production, const common::AppConfig& config) {
    const auto& app = production.app;
    if (config.deploy.idle_stop.count() <= 0 || !config.has_web() || config.static_site ||
        instances_of(app, "web") == 0)
        return;
    const auto now = Clock::now();
    if (now - m_seen_stats.read > k_stats_fresh) { // the supervisor's own: no lock
        m_seen_stats.read = now;
        read_proxy_stats();
    }
    const std::string seen = activity_seen(app);
    const bool busy = app_busy(app);
    {
        std::lock_guard lock(m_mutex);
        auto [activity, fresh] = m_activity.try_emplace(app, Activity{seen, now});
        if (fresh || busy || activity->second.seen != seen) {
            activity->second = Activity{seen, now};
            return;
        }
        if (now - activity->second.since < config.deploy.idle_stop)
            return;
    }
    if (m_store->canary(app))
        return; // deploy --canary: both sides are being compared
    {
        std::lock_guard lock(m_runs->mutex);
        if (auto it = m_runs->running.find(app); it != m_runs->running.end() && it->second > 0)
            return; // deployctl run
    }
    const std::string idle = common::format_duration(config.deploy.idle_stop);
    if (auto marked = db_write([&] { return m_store->set_sleeping(app, true); }); !marked) {
        common::log_error("cannot put " + app + " to sleep: " + marked.error().message);
        return;
    }
    // From this table on, deploy-proxy holds the app's requests; if it cannot
    // be told, the app stays awake.
    if (auto published = publish_routes(); !published) {
        if (auto awake = db_write([&] { return m_store->set_sleeping(app, false); }); !awake)
            common::log_error(awake.error().message);
        publish_routes_or_log("after a failed sleep");
        common::log_warn("cannot put " + app + " to sleep: " + published.error().message);
        return;
    }
    // deploy-proxy wrote its figures as it confirmed that table: a request it
    // routed before (the stats.json read above may be up to a second old: a
    // WebSocket opened since) keeps the app awake. Figures that predate the
    // table (they could not be written) tell nothing: awake too.
    std::uint64_t published = 0;
    {
        std::lock_guard lock(m_routes_mutex);
        published = m_publisher.generation(); // or a later table's: awake, to be safe
    }
    m_seen_stats.read = Clock::now();
    const auto cut = read_proxy_stats();
    std::string why;
    if (cut && *cut < published)
        why = "deploy-proxy's figures as it applied the table are missing";
    else if (activity_seen(app) != seen || app_busy(app))
        why = "a request came as it was put to sleep";
    if (!why.empty()) {
        if (auto awake = db_write([&] { return m_store->set_sleeping(app, false); }); !awake)
            common::log_error(awake.error().message);
        publish_routes_or_log("after a sleep called off"); // the held requests go on
        std::lock_guard lock(m_mutex);
        m_activity[app] = Activity{activity_seen(app), Clock::now()}; // a full idle_stop again
        common::log_info(app + " stays awake: " + why);
        return;
    }
    // A request that came just before the table is let finish.
    wait_drained(web_ports(production), config.deploy.drain);
    auto& runtime = runtime_for(production);
    runtime.stop({app, production.id}, {production.pid, production.pid_start}, k_stop_grace);
    if (auto cleared = db_write([&] { return m_store->clear_process(app, production.id); });
        !cleared)
        common::log_error(cleared.error().message);
    stop_processes(app, production.id, config.deploy.stop_timeout, Which::web);
    if (config.deploy.idle_stop_workers)
        stop_processes(app, production.id, config.deploy.stop_timeout, Which::others);
    {
        std::lock_guard lock(m_mutex);
        m_activity.erase(app);
    }
    const std::string note = "asleep: no request for " + idle +
                             " ([deploy] idle_stop); the next request starts it again";
    EventLog(m_options.data_dir.event_log(app, production.id), production.id).log("system", note);
    common::log_info(app + " " + production.id + ": " + note);
}

common::Status Engine::open_wake_socket() {
    auto fd = runtime::bind_unix_datagram(m_options.data_dir.proxy_dir() / "wake.sock");
    if (!fd)
        return fd.error();
    m_wake_fd = *fd;
    return {};
}

void Engine::wake_loop() {
    // Apps asked for whose lock a deploy, rollback or sleep holds: tried again
    // every 10 ms, so one app's deploy never keeps another app asleep.
    std::vector<std::string> pending;
    while (!stopping()) {
        pollfd ready{m_wake_fd, POLLIN, 0};
        if (::poll(&ready, 1, pending.empty() ? 200 : 10) > 0) {
            // Every name waiting, each once: a burst of requests asks again and again.
            char buffer[256];
            for (;;) {
                const auto n = ::recv(m_wake_fd, buffer, sizeof(buffer), MSG_DONTWAIT);
                if (n < 0)
                    break;
                std::string app(buffer, static_cast<std::size_t>(n));
                if (common::is_valid_app_name(app) &&
                    std::find(pending.begin(), pending.end(), app) == pending.end())
                    pending.push_back(std::move(app));
            }
        }
        std::erase_if(pending,
                      [this](const std::string& app) { return stopping() || wake_app(app); });
    }
}

bool Engine::wake_app(const std::string& app) {
    const auto asked = Clock::now();
    std::unique_lock deploy(slot(app).deploy_lock, std::try_to_lock);
    if (!deploy.owns_lock())
        return false; // wake_loop asks again in 10 ms
    auto production = m_store->production(app);
    if (!production || m_store->stopped(app) || !m_store->traffic(app).sleeping)
        return true;
    const std::string backoff_key = "wake " + app;
    bool failed_before = false;
    {
        std::lock_guard lock(m_routes_mutex);
        failed_before = m_wake_errors.count(app) > 0;
    }
    if (failed_before) {
        std::lock_guard lock(m_mutex);
        const auto& backoff = m_backoff[backoff_key];
        if (asked < backoff.last + backoff.delay)
            return true; // deploy-proxy answers 503 meanwhile
    }
    EventLog events(m_options.data_dir.event_log(app, production->id), production->id);
    auto config = common::parse_config(production->config, "deploy.toml");
    common::Status started = config ? common::Status{} : common::Status{config.error()};
    if (config) {
        // The runtime is told it serves (for a container, an engine call that
        // sets its restart policy) once the held requests went on to it.
        auto process = start_production(*production, *config,
                                        "waking up: a request came ([deploy] idle_stop)", false);
        if (!process)
            started = process.error();
    }
    if (!started) {
        const std::string why = started.error().message;
        {
            std::lock_guard lock(m_mutex);
            auto& backoff = m_backoff[backoff_key];
            backoff.delay = failed_before ? std::min(backoff.delay * 2, k_wake_backoff_max)
                                          : k_wake_backoff_first;
            backoff.last = Clock::now();
        }
        {
            std::lock_guard lock(m_routes_mutex);
            m_wake_errors[app] = why;
        }
        common::log_error(app + " " + production->id + ": cannot wake up: " + why);
        publish_routes_or_log("after a failed wake-up"); // its requests get 503
        return true;
    }
    // start_production cleared the flag: this table routes the app again.
    if (config->deploy.idle_stop_workers)
        if (auto others = start_processes(app, production->id, *config, events); !others)
            common::log_warn(app + " " + production->id + ": " + others.error().message);
    publish_routes_or_log("for " + app + ", awake");
    const auto routed = Clock::now();
    runtime_for(*production).serving({app, production->id});
    const std::string note = "awake: started and routed again in " + ms_text(routed - asked);
    events.log("system", note);
    common::log_info(app + " " + production->id + ": " + note);
    return true;
}

} // namespace agent
