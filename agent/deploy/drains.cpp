// [logs] drain: each app's lines shipped to its syslog receiver (agent/logs/drain.hpp),
// and [logs] max_age: log files past their age removed.
#include <agent/deploy/engine.hpp>
#include <agent/logs/drain.hpp>
#include <common/duration.hpp>
#include <common/log.hpp>

#include <fmt/format.h>

#include <sys/stat.h>

namespace agent {

namespace fs = std::filesystem;

namespace {

// Where an app's drain keeps its queue and state.
fs::path drain_dir(const DataDir& data, const std::string& app) {
    return data.app_dir(app) / "drain";
}

} // namespace

void Engine::reconcile_drains() {
    std::map<std::string, common::LogSettings> wanted;
    for (const auto& app : m_store->apps()) {
        auto row = m_store->production(app);
        if (!row)
            continue;
        auto config = common::parse_config(row->config, "deploy.toml");
        if (config && !config->logs.drain.empty())
            wanted[app] = config->logs;
    }
    std::vector<std::unique_ptr<logs::Drain>> stopped; // joined outside the lock
    std::vector<std::string> gone;
    {
        std::lock_guard lock(m_drains_mutex);
        for (auto it = m_drains.begin(); it != m_drains.end();) {
            auto want = wanted.find(it->first);
            if (want != wanted.end() && want->second.drain == it->second->url() &&
                want->second.drain_queue == it->second->queue_limit()) {
                ++it;
                continue;
            }
            if (want == wanted.end())
                gone.push_back(it->first);
            stopped.push_back(std::move(it->second));
            it = m_drains.erase(it);
        }
    }
    stopped.clear();
    // A drain that went takes its queue with it: one set again later starts afresh.
    for (const auto& app : gone) {
        std::error_code ec;
        fs::remove_all(drain_dir(m_options.data_dir, app), ec);
        common::log_info(fmt::format("drain of {}: removed", app));
    }
    std::lock_guard lock(m_drains_mutex);
    for (const auto& [app, settings] : wanted) {
        if (m_drains.count(app))
            continue;
        auto target = common::parse_drain_url(settings.drain);
        if (!target)
            continue; // deploy.toml was checked when deployed
        m_drains[app] = std::make_unique<logs::Drain>(
            app, m_options.data_dir.app_dir(app) / "logs", drain_dir(m_options.data_dir, app),
            settings.drain, *target, settings.drain_queue);
        common::log_info(fmt::format("drain of {}: shipping its logs to {}", app, settings.drain));
    }
}

void Engine::stop_drains() {
    std::map<std::string, std::unique_ptr<logs::Drain>> drains;
    {
        std::lock_guard lock(m_drains_mutex);
        drains.swap(m_drains);
    }
    drains.clear(); // each stops its thread; what is queued stays for the next start
}

std::optional<DrainStatus> Engine::drain_status(const std::string& app) {
    std::lock_guard lock(m_drains_mutex);
    auto it = m_drains.find(app);
    if (it == m_drains.end())
        return std::nullopt;
    const auto stats = it->second->stats();
    return DrainStatus{stats.url,       stats.connected, stats.queued_bytes,
                       stats.delivered, stats.dropped,   stats.last_error};
}

std::vector<ExpiredLog> Engine::expire_logs(bool dry_run) {
    std::vector<ExpiredLog> out;
    const auto now = std::chrono::system_clock::now();
    for (const auto& app : m_store->apps()) {
        auto row = m_store->production(app);
        if (!row)
            continue;
        auto config = common::parse_config(row->config, "deploy.toml");
        if (!config || config->logs.max_age.count() == 0)
            continue;
        const auto oldest = now - config->logs.max_age;
        std::error_code ec;
        for (const auto& entry :
             fs::directory_iterator(m_options.data_dir.app_dir(app) / "logs", ec)) {
            struct stat st {};
            // The proxy keeps the current access log open: it goes by rotating (to .1).
            if (!entry.is_regular_file() || entry.path().filename() == "access.ndjson" ||
                ::stat(entry.path().c_str(), &st) != 0)
                continue;
            const auto written =
                std::chrono::system_clock::time_point(std::chrono::seconds(st.st_mtim.tv_sec));
            if (written >= oldest)
                continue;
            ExpiredLog expired{app, entry.path().filename().string(),
                               static_cast<std::uint64_t>(st.st_size)};
            std::error_code removed;
            if (!dry_run && !fs::remove(entry.path(), removed)) {
                common::log_warn(fmt::format("cannot remove the expired log {}: {}",
                                             entry.path().string(), removed.message()));
                continue;
            }
            out.push_back(std::move(expired));
        }
    }
    if (!dry_run && !out.empty()) {
        std::uint64_t bytes = 0;
        for (const auto& log : out)
            bytes += log.bytes;
        common::log_info(fmt::format("removed {} log file(s) past [logs] max_age, {}", out.size(),
                                     common::format_bytes(bytes)));
    }
    return out;
}

} // namespace agent
