// Canary releases (deployctl deploy --canary, deployctl canary): a healthy
// release becomes CANARY and takes a share of the app's traffic next to
// PRODUCTION (deploy-proxy picks the side per client, routes.json "canary");
// promote switches to it as a deploy would, abort stops it (FAILED
// "canary aborted"). docs/design.md §3.
#include <agent/deploy/engine.hpp>
#include <agent/deploy/events.hpp>
#include <agent/proxy/stats.hpp>
#include <agent/runtime/process.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>

namespace agent {

using common::ErrorKind;
using common::make_error;
using common::State;

namespace {
std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}
// Each side's figures from deploy-proxy's stats.json ("releases": {"APP RELEASE": ...}).
void read_sides(const std::filesystem::path& stats_file, CanaryInfo& info) {
    info.canary_side.release = info.release;
    info.production_side.release = info.production;
    auto text = common::read_file(stats_file);
    if (!text)
        return;
    auto json = nlohmann::json::parse(*text, nullptr, false);
    if (!json.is_object() || !json.contains("releases"))
        return;
    auto releases = proxy::apps_from_json(json["releases"]);
    for (CanarySide* side : {&info.canary_side, &info.production_side}) {
        auto it = releases.find(info.app + " " + side->release);
        if (it == releases.end())
            continue;
        side->requests = it->second.count;
        side->errors = proxy::stat_5xx(it->second);
        side->p95_ms = proxy::stat_quantile(it->second, 0.95) * 1000;
    }
}

double error_rate(const CanarySide& side) {
    return side.requests
               ? 100.0 * static_cast<double>(side.errors) / static_cast<double>(side.requests)
               : 0.0;
}
} // namespace

void Engine::enter_canary(const std::string& app, Job& job, const runtime::AppProcess& process,
                          const EventLog& events) {
    const std::string detail = "canary: " + std::to_string(job.canary) + "% of the traffic";
    auto moved = db_write([&] {
        return m_store->transition(app, job.id, State::provisioning, State::canary, detail);
    });
    CanaryRow row{app, job.id, job.canary, job.canary_auto > 0 ? unix_now() + job.canary_auto : 0,
                  job.canary_max_error_bp};
    common::Status put =
        moved ? db_write([&] { return m_store->put_canary(row); }) : common::Status(moved.error());
    if (!put) {
        stop_process(app, job.id, job.config, process);
        stop_processes(app, job.id, job.config.deploy.stop_timeout);
        fail(app, job.id, moved ? State::canary : State::provisioning,
             "cannot record the canary: " + put.error().message, events);
        return;
    }
    events.state(State::canary, detail);
    publish_routes_or_log("for the canary " + app + " " + job.id);
    events.log("system", fmt::format("canary: {}% of {}'s clients go to {} (the rest to "
                                     "PRODUCTION); deployctl canary promote | abort",
                                     job.canary, app, job.id));
    if (job.canary_auto > 0)
        events.log("system",
                   fmt::format("canary: judged in {}s: promoted unless its 5xx rate is above "
                               "PRODUCTION's by more than {:.2f} percentage points",
                               job.canary_auto, job.canary_max_error_bp / 100.0));
    common::log_info("deployment " + app + " " + job.id + " is CANARY (" +
                     std::to_string(job.canary) + "%)");
}

common::Result<CanaryInfo> Engine::canary(const std::string& app) {
    auto row = m_store->canary(app);
    if (!row) {
        if (m_store->releases(app).empty())
            return make_error(ErrorKind::not_found, "no app named " + app);
        return make_error(ErrorKind::not_found,
                          app + " has no canary release (deployctl deploy --canary PCT)");
    }
    auto production = m_store->production(app);
    CanaryInfo info{app,          row->release, production ? production->id : std::string(),
                    row->percent, row->auto_at, row->max_error_bp};
    read_sides(m_options.data_dir.proxy_dir() / "stats.json", info);
    return info;
}

// --auto: once due, promoted unless the canary's 5xx rate is above PRODUCTION's by
// more than max_error_rate points; the decision and its figures in the release's events.
void Engine::judge_canary(const std::string& app) {
    auto row = m_store->canary(app);
    if (!row || row->auto_at == 0 || unix_now() < row->auto_at)
        return;
    auto info = canary(app);
    if (!info)
        return;
    const double canary_rate = error_rate(info->canary_side);
    const double production_rate = error_rate(info->production_side);
    const double allowed = info->max_error_bp / 100.0;
    const std::string figures = fmt::format(
        "canary {} {} requests, 5xx {:.2f}%, p95 {:.1f}ms; PRODUCTION {} {} requests, 5xx "
        "{:.2f}%, p95 {:.1f}ms; max error rate +{:.2f} points",
        info->release, info->canary_side.requests, canary_rate, info->canary_side.p95_ms,
        info->production, info->production_side.requests, production_rate,
        info->production_side.p95_ms, allowed);
    if (canary_rate > production_rate + allowed) {
        auto aborted = abort_canary_locked(app, "--auto: aborted: " + figures);
        if (!aborted)
            common::log_error("cannot abort the canary of " + app + ": " + aborted.error().message);
        return;
    }
    auto promoted = promote_canary_locked(app, "--auto: promoted: " + figures);
    if (!promoted) {
        common::log_error("cannot promote the canary of " + app + ": " + promoted.error().message +
                          "; aborting it");
        if (auto aborted = abort_canary_locked(app, "--auto: the promotion failed: " +
                                                        promoted.error().message);
            !aborted)
            common::log_error(aborted.error().message);
    }
}

// Not restarted: a canary that dies is the verdict a canary is there to give, and
// its clients would get 502s until it came back. Aborted as after an agent restart.
void Engine::supervise_canary(const std::string& app) {
    auto canary_row = m_store->canary(app);
    if (!canary_row)
        return;
    auto row = m_store->get(app, canary_row->release);
    if (!row || row->state != State::canary || row->pid <= 0)
        return;
    std::string how = "exited";
    if (auto status = runtime::reap_if_exited(row->pid))
        how = "exited with " + *status;
    else if (runtime_for(*row).alive({row->pid, row->pid_start}))
        return;
    if (auto aborted = abort_canary_locked(app, "aborted: its process " + how); !aborted)
        common::log_error("cannot abort the canary of " + app + ": " + aborted.error().message);
}

common::Result<CanaryInfo> Engine::set_canary(const std::string& app, int percent) {
    if (percent < 0 || percent > 100)
        return make_error(ErrorKind::usage,
                          "a canary's share is 0 to 100 (percent), not " + std::to_string(percent));
    {
        std::lock_guard deploy(slot(app).deploy_lock);
        auto row = m_store->canary(app);
        if (!row)
            return canary(app).error();
        row->percent = percent;
        TRY(db_write([&] { return m_store->put_canary(*row); }));
        EventLog(m_options.data_dir.event_log(app, row->release), row->release)
            .log("system", fmt::format("canary: {}% of the traffic", percent));
        TRY(publish_routes());
    }
    return canary(app);
}

common::Result<Promotion> Engine::promote_canary(const std::string& app) {
    if (!m_started)
        return make_error(ErrorKind::internal, "the deployment engine is not running");
    std::lock_guard deploy(slot(app).deploy_lock);
    return promote_canary_locked(app, "promoted on request");
}

common::Result<ReleaseInfo> Engine::abort_canary(const std::string& app) {
    if (!m_started)
        return make_error(ErrorKind::internal, "the deployment engine is not running");
    std::lock_guard deploy(slot(app).deploy_lock);
    return abort_canary_locked(app, "aborted on request");
}

common::Result<Promotion> Engine::promote_canary_locked(const std::string& app,
                                                        const std::string& why) {
    auto canary_row = m_store->canary(app);
    if (!canary_row)
        return canary(app).error();
    const std::string id = canary_row->release;
    TRY_ASSIGN(auto row, m_store->get(app, id));
    if (row.state != State::canary)
        return make_error(ErrorKind::refused, "release " + id + " is " +
                                                  std::string(common::to_string(row.state)) +
                                                  ", not CANARY");
    TRY_ASSIGN(auto config, common::parse_config(row.config, "deploy.toml"));
    EventLog events(m_options.data_dir.event_log(app, id), id);
    events.log("system", "canary: " + why + "; switching " + app + " to " + id);
    // Out of the canaries first: while it is proven live the candidate takes
    // all of the app's traffic, and once PRODUCTION it is no canary.
    TRY(db_write([&] { return m_store->remove_canary(app); }));
    auto previous = activate(app, id, State::canary, events);
    if (!previous) {
        if (auto back = db_write([&] { return m_store->put_canary(*canary_row); }); !back)
            common::log_error(back.error().message);
        publish_routes_or_log("after a failed canary promotion");
        return previous.error();
    }
    runtime_for(app, id, config).serving({app, id});
    // (A canary without a web started its processes for its check: they serve now too.)
    if (auto started = start_processes(app, id, config, events, Serving::all); !started)
        common::log_warn(app + " " + id + ": " + started.error().message +
                         "; the supervisor tries again");
    common::log_info("canary " + app + " " + id + " promoted (" + why + ")");
    Job job;
    job.config = config;
    if (*previous) {
        auto old = m_store->get(app, **previous);
        job.previous = **previous;
        if (old)
            job.previous_process = {old->pid, old->pid_start};
    }
    start_drain(app, std::move(job)); // off the deploy lock, as after a switch
    TRY_ASSIGN(auto info, release(app, id));
    return Promotion{std::move(info), *previous, {}};
}

common::Result<ReleaseInfo> Engine::abort_canary_locked(const std::string& app,
                                                        const std::string& why) {
    auto canary_row = m_store->canary(app);
    if (!canary_row)
        return canary(app).error();
    const std::string id = canary_row->release;
    TRY_ASSIGN(auto row, m_store->get(app, id));
    EventLog events(m_options.data_dir.event_log(app, id), id);
    events.log("system", "canary: " + why);
    // Unrouted first, then stopped: no request reaches a stopping process.
    TRY(db_write([&] { return m_store->remove_canary(app); }));
    publish_routes_or_log("after the canary " + app + " " + id + " was aborted");
    auto config = common::parse_config(row.config, "deploy.toml");
    const auto stop_timeout = config ? config->deploy.stop_timeout : k_stop_grace;
    if (row.state == State::canary) {
        runtime_for(row).stop({app, id}, {row.pid, row.pid_start}, k_stop_grace);
        stop_processes(app, id, stop_timeout);
        if (auto cleared = db_write([&] { return m_store->clear_process(app, id); }); !cleared)
            common::log_error(cleared.error().message);
        fail(app, id, State::canary, "canary aborted", events);
    }
    common::log_info("canary " + app + " " + id + " aborted (" + why + ")");
    if (config)
        prune(app, config->deploy.keep);
    return release(app, id);
}

} // namespace agent
