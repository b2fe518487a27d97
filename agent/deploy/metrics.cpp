// GET /metrics: the deployment engine's figures in the Prometheus text format
// (docs/metrics.md).
#include <agent/acme/manager.hpp>
#include <agent/deploy/engine.hpp>
#include <agent/logs/drain.hpp>
#include <agent/proxy/stats.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <array>
#include <map>
#include <vector>

namespace agent {

namespace {

// Upper bounds of deploy_agent_deployment_duration_seconds, in seconds.
constexpr std::array<double, 9> k_duration_buckets{1, 2.5, 5, 10, 30, 60, 120, 300, 600};

std::string bucket_bound(double bound) {
    return fmt::format("{}", bound);
}

} // namespace

// The proxy's counters (stats.json, rewritten by deploy-proxy each second) as
// Prometheus counters that never go back: what earlier runs of the proxy
// counted is kept in stats.base.json and added (docs/metrics.md).
std::string Engine::proxy_metrics() {
    namespace px = proxy;
    const auto dir = m_options.data_dir.proxy_dir();
    std::lock_guard lock(m_proxy_figures.mutex);
    auto& figures = m_proxy_figures;
    const auto base_file = dir / "stats.base.json";
    if (!figures.loaded) {
        figures.loaded = true;
        if (auto text = common::read_file(base_file)) {
            auto json = nlohmann::json::parse(*text, nullptr, false);
            if (json.is_object()) {
                figures.instance = json.value("instance", "");
                figures.last = px::apps_from_json(json.value("last", nlohmann::json::object()));
                figures.base = px::apps_from_json(json.value("base", nlohmann::json::object()));
            }
        }
    }
    std::int64_t connections = 0;
    std::vector<std::uint64_t> workers; // requests of each worker of this run of the proxy
    if (auto text = common::read_file(dir / "stats.json")) {
        auto json = nlohmann::json::parse(*text, nullptr, false);
        if (json.is_object() && json.contains("instance") && json["instance"].is_string()) {
            const std::string instance = json["instance"];
            auto apps = px::apps_from_json(json.value("apps", nlohmann::json::object()));
            if (instance != figures.instance) {
                // A new run of the proxy: the last figures of the one before are kept.
                for (auto& [app, stats] : figures.last) {
                    stats.in_flight = 0;
                    stats.websockets = 0;
                    figures.base[app].add(stats);
                }
                figures.instance = instance;
            }
            figures.last = std::move(apps);
            connections = json.value("connections", std::int64_t{0});
            if (const auto found = json.find("workers"); found != json.end() && found->is_array())
                for (const auto& worker : *found)
                    workers.push_back(
                        worker.is_object() ? worker.value("requests", std::uint64_t{0}) : 0);
            nlohmann::json saved{{"instance", figures.instance},
                                 {"last", px::stats_json("", figures.last, 0)["apps"]},
                                 {"base", px::stats_json("", figures.base, 0)["apps"]}};
            if (!px::write_snapshot(base_file, saved.dump()))
                common::log_debug("cannot write " + base_file.string());
        }
    }
    std::map<std::string, px::AppStats> total = figures.base;
    for (const auto& [app, stats] : figures.last)
        total[app].add(stats);
    std::string out;
    out += "# HELP deploy_proxy_requests_total Requests deploy-proxy answered, by app, method "
           "and status class.\n# TYPE deploy_proxy_requests_total counter\n";
    for (const auto& [app, stats] : total)
        for (std::size_t m = 0; m < px::k_stat_methods.size(); ++m)
            for (std::size_t c = 0; c < 5; ++c)
                if (stats.requests[m][c] > 0)
                    out += fmt::format("deploy_proxy_requests_total{{app=\"{}\",method=\"{}\",code="
                                       "\"{}xx\"}} {}\n",
                                       app, px::k_stat_methods[m], c + 1, stats.requests[m][c]);
    out += "# HELP deploy_proxy_request_duration_seconds From a request's head read to its "
           "answer's last byte written.\n# TYPE deploy_proxy_request_duration_seconds histogram\n";
    for (const auto& [app, stats] : total) {
        for (std::size_t b = 0; b < px::k_stat_buckets.size(); ++b)
            out += fmt::format(
                "deploy_proxy_request_duration_seconds_bucket{{app=\"{}\",le=\"{}\"}} {}\n", app,
                px::k_stat_buckets[b], stats.buckets[b]);
        out += fmt::format(
            "deploy_proxy_request_duration_seconds_bucket{{app=\"{}\",le=\"+Inf\"}} {}\n", app,
            stats.count);
        out += fmt::format("deploy_proxy_request_duration_seconds_sum{{app=\"{}\"}} {:.6f}\n", app,
                           stats.seconds);
        out += fmt::format("deploy_proxy_request_duration_seconds_count{{app=\"{}\"}} {}\n", app,
                           stats.count);
    }
    auto per_app = [&](const char* name, const char* type, const char* help, auto field) {
        out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
        for (const auto& [app, stats] : total)
            out += fmt::format("{}{{app=\"{}\"}} {}\n", name, app, field(stats));
    };
    per_app("deploy_proxy_request_bytes_total", "counter",
            "Request body bytes received from clients.",
            [](const px::AppStats& s) { return s.bytes_in; });
    per_app("deploy_proxy_response_bytes_total", "counter",
            "Answer bytes (header and body) written to clients.",
            [](const px::AppStats& s) { return s.bytes_out; });
    per_app("deploy_proxy_upstream_connect_errors_total", "counter",
            "Connections to an instance of the app that failed (refused, reset, timed out).",
            [](const px::AppStats& s) { return s.connect_errors; });
    per_app("deploy_proxy_retries_total", "counter",
            "Requests sent again, to another instance or on a fresh connection.",
            [](const px::AppStats& s) { return s.retries; });
    per_app("deploy_proxy_requests_in_flight", "gauge", "Requests under way now.",
            [](const px::AppStats& s) { return s.in_flight; });
    per_app("deploy_proxy_websockets", "gauge", "Upgraded (WebSocket) connections open now.",
            [](const px::AppStats& s) { return s.websockets; });
    out += fmt::format("# HELP deploy_proxy_connections Client connections open now.\n"
                       "# TYPE deploy_proxy_connections gauge\ndeploy_proxy_connections {}\n",
                       connections);
    out += fmt::format("# HELP deploy_proxy_workers deploy-proxy's workers (event loops, one "
                       "thread each).\n# TYPE deploy_proxy_workers gauge\ndeploy_proxy_workers "
                       "{}\n",
                       workers.size());
    out += "# HELP deploy_proxy_worker_requests_total Requests each deploy-proxy worker answered "
           "since deploy-proxy started (from 0 again after a restart).\n"
           "# TYPE deploy_proxy_worker_requests_total counter\n";
    for (std::size_t i = 0; i < workers.size(); ++i)
        out +=
            fmt::format("deploy_proxy_worker_requests_total{{worker=\"{}\"}} {}\n", i, workers[i]);
    return out;
}

// [logs] drain of each app that has one (logs/drain.hpp).
std::string Engine::drain_metrics() {
    std::map<std::string, logs::DrainStats> drains;
    {
        std::lock_guard lock(m_drains_mutex);
        for (const auto& [app, drain] : m_drains)
            drains[app] = drain->stats();
    }
    struct Metric {
        const char* name;
        const char* type;
        const char* help;
        std::uint64_t (*value)(const logs::DrainStats&);
    };
    static constexpr Metric k_metrics[] = {
        {"deploy_agent_drain_delivered_total", "counter",
         "Log lines an app's [logs] drain delivered to its syslog receiver.",
         [](const logs::DrainStats& s) { return s.delivered; }},
        {"deploy_agent_drain_dropped_total", "counter",
         "Log lines a drain dropped: they came while its queue was full and the receiver could "
         "not be reached.",
         [](const logs::DrainStats& s) { return s.dropped; }},
        {"deploy_agent_drain_queued_bytes", "gauge",
         "Bytes a drain holds that the receiver has not confirmed yet.",
         [](const logs::DrainStats& s) { return s.queued_bytes; }},
        {"deploy_agent_drain_connected", "gauge", "1 while a drain is connected to its receiver.",
         [](const logs::DrainStats& s) { return std::uint64_t{s.connected}; }},
    };
    std::string out;
    for (const auto& metric : k_metrics) {
        out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", metric.name, metric.help, metric.name,
                           metric.type);
        for (const auto& [app, stats] : drains)
            out += fmt::format("{}{{app=\"{}\"}} {}\n", metric.name, app, metric.value(stats));
    }
    return out;
}

void Engine::count_deployment(const std::string& app, bool production,
                              std::chrono::steady_clock::duration took) {
    const double seconds = std::chrono::duration<double>(took).count();
    std::lock_guard lock(m_figures.mutex);
    auto& figures = m_figures.apps[app];
    ++(production ? figures.production : figures.failed);
    for (std::size_t i = 0; i < k_duration_buckets.size(); ++i)
        if (seconds <= k_duration_buckets[i])
            ++figures.buckets[i];
    figures.seconds += seconds;
}

std::string Engine::metrics() {
    std::string out = m_certificates ? m_certificates->metrics() : std::string();
    out += "# HELP deploy_agent_deployments_total Deployments that ended, by app and outcome "
           "(production: switched to; failed).\n"
           "# TYPE deploy_agent_deployments_total counter\n";
    std::map<std::string, DeployFigures::App> apps;
    {
        std::lock_guard lock(m_figures.mutex);
        apps = m_figures.apps;
    }
    for (const auto& [app, figures] : apps) {
        out +=
            fmt::format("deploy_agent_deployments_total{{app=\"{}\",outcome=\"production\"}} {}\n",
                        app, figures.production);
        out += fmt::format("deploy_agent_deployments_total{{app=\"{}\",outcome=\"failed\"}} {}\n",
                           app, figures.failed);
    }
    out += "# HELP deploy_agent_deployment_duration_seconds From a deployment's start (a build "
           "slot taken) to PRODUCTION or FAILED.\n"
           "# TYPE deploy_agent_deployment_duration_seconds histogram\n";
    for (const auto& [app, figures] : apps) {
        const auto count = figures.production + figures.failed;
        for (std::size_t i = 0; i < k_duration_buckets.size(); ++i)
            out += fmt::format(
                "deploy_agent_deployment_duration_seconds_bucket{{app=\"{}\",le=\"{}\"}} {}\n", app,
                bucket_bound(k_duration_buckets[i]), figures.buckets[i]);
        out += fmt::format(
            "deploy_agent_deployment_duration_seconds_bucket{{app=\"{}\",le=\"+Inf\"}} {}\n", app,
            count);
        out += fmt::format("deploy_agent_deployment_duration_seconds_sum{{app=\"{}\"}} {:.3f}\n",
                           app, figures.seconds);
        out += fmt::format("deploy_agent_deployment_duration_seconds_count{{app=\"{}\"}} {}\n", app,
                           count);
    }
    out += "# HELP deploy_agent_releases Releases on this agent, by app and state.\n"
           "# TYPE deploy_agent_releases gauge\n";
    if (m_started) {
        std::map<std::pair<std::string, std::string>, int> releases;
        for (const auto& row : m_store->all_releases())
            ++releases[{row.app, std::string(common::to_string(row.state))}];
        for (const auto& [key, count] : releases)
            out += fmt::format("deploy_agent_releases{{app=\"{}\",state=\"{}\"}} {}\n", key.first,
                               key.second, count);
    }
    int free_builds = 0;
    {
        std::lock_guard lock(m_build_mutex);
        free_builds = m_free_builds;
    }
    out += fmt::format("# HELP deploy_agent_build_slots Builds that may run at once.\n"
                       "# TYPE deploy_agent_build_slots gauge\n"
                       "deploy_agent_build_slots {}\n"
                       "# HELP deploy_agent_build_slots_in_use Builds (and release commands' "
                       "deployments waiting for one) holding a slot now.\n"
                       "# TYPE deploy_agent_build_slots_in_use gauge\n"
                       "deploy_agent_build_slots_in_use {}\n",
                       k_build_slots, k_build_slots - free_builds);
    return out + drain_metrics() + proxy_metrics();
}

} // namespace agent
