// GET /metrics: the deployment engine's figures in the Prometheus text format
// (docs/metrics.md).
#include <agent/deploy/engine.hpp>

#include <fmt/format.h>

#include <array>
#include <map>

namespace agent {

namespace {

// Upper bounds of deploy_agent_deployment_duration_seconds, in seconds.
constexpr std::array<double, 9> k_duration_buckets{1, 2.5, 5, 10, 30, 60, 120, 300, 600};

std::string bucket_bound(double bound) { return fmt::format("{}", bound); }

} // namespace

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
    std::string out;
    out += "# HELP deploy_agent_deployments_total Deployments that ended, by app and outcome "
           "(production: switched to; failed).\n"
           "# TYPE deploy_agent_deployments_total counter\n";
    std::map<std::string, DeployFigures::App> apps;
    {
        std::lock_guard lock(m_figures.mutex);
        apps = m_figures.apps;
    }
    for (const auto& [app, figures] : apps) {
        out += fmt::format("deploy_agent_deployments_total{{app=\"{}\",outcome=\"production\"}} {}\n",
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
    return out;
}

} // namespace agent
