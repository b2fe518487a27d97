// The switch to PRODUCTION, routing, drain, prune, rollback and remove.
#include <agent/acme/manager.hpp>
#include <agent/deploy/engine.hpp>
#include <agent/deploy/history.hpp>
#include <agent/deploy/routes.hpp>
#include <agent/runtime/connections.hpp>
#include <agent/runtime/process.hpp>
#include <common/duration.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>

#include <fmt/format.h>

#include <algorithm>

namespace agent {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;
using common::State;

namespace {
// How long a new release has to answer through the proxy, and the pause
// between tries (the proxy may still be applying the table).
constexpr std::chrono::milliseconds k_live_timeout{3000};
constexpr std::chrono::milliseconds k_live_retry{100};
} // namespace

common::Result<std::optional<std::string>> Engine::activate(const std::string& app,
                                                            const std::string& id, State from,
                                                            const EventLog& events) {
    // [acme]: the release's domains get their certificates before it is routed
    // (HTTP-01 and TLS-ALPN-01 are answered by the proxy whatever it routes).
    settle_certificates(app, id, events);
    // The proof first: the proxy routes the app to `id` while the database
    // still names the previous PRODUCTION, so a release that cannot be shown
    // live never becomes PRODUCTION and the previous one is routed again.
    if (auto proven = prove_live(app, id, events); !proven)
        return proven.error();
    auto previous = db_write([&] { return m_store->switch_production(app, id, from); });
    if (!previous) {
        {
            std::lock_guard lock(m_routes_mutex);
            m_candidates.erase(app);
        }
        publish_routes_or_log("after a failed switch"); // back to what the database says serves
        events.log("system", "not switched: " + previous.error().message);
        return make_error(previous.error().kind,
                          "cannot switch " + app + " to " + id + ": " + previous.error().message);
    }
    if (*previous) {
        EventLog(m_options.data_dir.event_log(app, **previous), **previous)
            .state(State::inactive, "replaced by " + id);
    }
    // A deploy or rollback starts a stopped app again; the flag goes before
    // the candidate, so no table in between routes the app as stopped.
    clear_stopped(app, id, events);
    clear_sleeping(app); // [deploy] idle_stop: the new release runs
    {
        std::lock_guard lock(m_routes_mutex);
        m_candidates.erase(app);
    }
    // The proxy already routes the app to `id` (the candidate's table was
    // acknowledged): this table routes it the same way. Should it fail, the
    // supervisor publishes it again.
    publish_routes_or_log("after the switch to " + app + " " + id);
    events.state(State::production);
    return previous;
}

void Engine::settle_certificates(const std::string& app, const std::string& id,
                                 const EventLog& events) {
    if (!m_certificates)
        return;
    auto row = m_store->get(app, id);
    if (!row)
        return;
    auto config = common::parse_config(row->config, "deploy.toml");
    if (!config)
        return;
    // A name whose certificate cannot be had now is a warning, never a failure:
    // the app is live over plain HTTP and the agent keeps trying.
    for (const auto& line : m_certificates->settle(route_hosts(app, *config), k_certificate_wait))
        events.log("system", line);
}

std::vector<acme::CertificateStatus> Engine::certificates() const {
    return m_certificates ? m_certificates->list() : std::vector<acme::CertificateStatus>{};
}

common::Status Engine::prove_live(const std::string& app, const std::string& id,
                                  const EventLog& events) {
    auto row = m_store->get(app, id);
    if (!row)
        return row.error();
    auto config = common::parse_config(row->config, "deploy.toml");
    if (!config)
        return config.error();
    {
        std::lock_guard lock(m_routes_mutex);
        m_candidates[app] = id;
    }
    // A table that is written but not acknowledged: the probe below says what
    // answers instead (another program, no proxy); should the proxy answer
    // from `id` with the probe key, that proves the route all the same.
    auto published = publish_routes();
    if (!published && published.error().kind != ErrorKind::timeout) {
        {
            std::lock_guard lock(m_routes_mutex);
            m_candidates.erase(app);
        }
        publish_routes_or_log("after a failed switch"); // the previous PRODUCTION again
        events.log("system", "not switched: " + published.error().message);
        return make_error(ErrorKind::failed,
                          "cannot switch " + app + " to " + id + ": " + published.error().message);
    }
    if (!m_proxy.enabled()) // no proxy runs (engine tests): the table only, nothing to prove
        return published;
    if (!config->has_web() && !config->static_site) {
        events.log("system", "no web process: nothing is routed to " + app);
        return published;
    }
    if (!config->static_site && instances_of(app, "web") == 0) {
        events.log("system", "web is scaled to 0: deploy-proxy answers 503 for " + app);
        return published;
    }
    const std::string host = app + ".localhost";
    const std::string path = config->static_site ? "/" : config->run.health.path;
    const std::string expected = app + " " + id;
    const std::string where =
        "http://" + host + path + " through deploy-proxy on " + m_options.proxy.listen;
    const auto started = std::chrono::steady_clock::now();
    const auto deadline = started + k_live_timeout;
    std::string reason;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        auto answer = m_proxy.probe(host, path, std::max(left, std::chrono::milliseconds(500)));
        const bool from_release = answer.routed && *answer.routed == expected;
        if (from_release && answer.status >= 200 && answer.status < 400) {
            auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - started);
            events.log("system", "live: " + where + " answered " + answer.message + " from " + id +
                                     " (" + std::to_string(took.count()) + "ms)");
            if (!published)
                common::log_warn(published.error().message + ", but it answered from " + id);
            return {};
        }
        if (answer.status == 0)
            reason = "no answer (" + answer.message + "); is deploy-proxy running? See " +
                     m_options.data_dir.proxy_log().string();
        else if (!answer.routed)
            reason = "the answer (" + answer.message +
                     ") did not come from this agent's deploy-proxy: it did not name the release "
                     "it routed to, so another program may hold " +
                     m_options.proxy.listen + " (see " + m_options.data_dir.proxy_log().string() +
                     ")";
        else if (*answer.routed == "none")
            reason = "deploy-proxy has no route for " + host + " (" + answer.message +
                     "); its routing table was not applied (see " +
                     m_options.data_dir.proxy_log().string() + ")";
        else if (!from_release)
            reason = "deploy-proxy routed it to " + *answer.routed + ", not " + id + " (" +
                     answer.message + ")";
        else
            reason = id + " answered " + answer.message + " through deploy-proxy";
        if (std::chrono::steady_clock::now() + k_live_retry >= deadline || stopping())
            break;
        sleep_unless_stopping(k_live_retry);
    }
    {
        std::lock_guard lock(m_routes_mutex);
        m_candidates.erase(app);
    }
    publish_routes_or_log("after a failed live check"); // the previous PRODUCTION (or nothing)
    if (!published)
        reason += " (" + published.error().message + ")";
    events.log("system", "not live: " + where + ": " + reason);
    return make_error(ErrorKind::failed, id + " is not live: " + where + ": " + reason);
}

// deployctl deploy --canary: the CANARY release's web instances take
// `percent` of the route's clients (routes.json "canary").
void Engine::add_canary_side(const std::string& app, const std::string& serving, Route& route) {
    auto canary = m_store->canary(app);
    if (!canary || canary->release == serving)
        return;
    auto row = m_store->get(app, canary->release);
    if (!row || row->state != State::canary)
        return;
    for (const auto& [port, name] : web_instances(*row)) {
        route.canary_upstreams.push_back("127.0.0.1:" + std::to_string(port));
        route.canary_instances.push_back(name);
    }
    if (route.canary_upstreams.empty())
        return;
    route.canary_release = row->id;
    route.canary_percent = canary->percent;
}

std::vector<Route> Engine::routing_table_locked() {
    std::vector<Route> routes;
    auto apps = m_store->apps();
    for (const auto& [app, id] : m_candidates)
        if (std::find(apps.begin(), apps.end(), app) == apps.end())
            apps.push_back(app);
    for (const auto& app : apps) {
        // A release being proven live is routed in place of the PRODUCTION one.
        std::optional<ReleaseRow> production;
        if (auto candidate = m_candidates.find(app); candidate != m_candidates.end())
            if (auto row = m_store->get(app, candidate->second))
                production = std::move(*row);
        if (!production)
            production = m_store->production(app);
        if (!production)
            continue;
        auto config = common::parse_config(production->config, "deploy.toml");
        if (!config)
            common::log_warn(app + " " + production->id + ": " + config.error().message);
        const bool is_static = config && config->static_site;
        // A candidate is being proven live: it is routed even if the app was stopped.
        const bool stopped = !m_candidates.count(app) && m_store->stopped(app);
        // deployctl scale web=0: deploy-proxy answers 503 "APP is scaled to zero".
        const bool scaled_to_zero =
            !stopped && !is_static && config && config->has_web() && instances_of(app, "web") == 0;
        // [deploy] idle_stop: deploy-proxy holds its requests and wakes the agent.
        const bool asleep = !stopped && !scaled_to_zero && !m_candidates.count(app) && config &&
                            sleeping(app, *config);
        // Its web instances, but those out of the table (failing their check,
        // or leaving); all but the leaving ones when every one fails.
        std::vector<std::string> upstreams;
        std::vector<std::string> instances; // their names, for the access log
        if (!is_static && !stopped && !scaled_to_zero && !asleep) {
            const auto web = web_instances(*production);
            for (int pass = 0; pass < 2 && upstreams.empty(); ++pass)
                for (const auto& [port, name] : web) {
                    const std::string key = web_key(app, production->id, port);
                    if (m_leaving.count(key))
                        continue;
                    auto failing = m_failing.find(key);
                    if (pass == 0 && failing != m_failing.end() &&
                        failing->second >= k_failed_checks)
                        continue;
                    upstreams.push_back("127.0.0.1:" + std::to_string(port));
                    instances.push_back(name);
                }
            if (upstreams.empty())
                continue;
        }
        Route route{"", app, production->id, ""};
        if (const auto traffic = m_store->traffic(app); traffic.maintenance || traffic.paused) {
            route.maintenance = traffic.maintenance;
            route.maintenance_message = traffic.message;
            route.retry_after = traffic.retry_after;
            if (traffic.maintenance)
                route.maintenance_page = maintenance_page(app, production->id, config);
            route.pause_timeout_ms = traffic.paused ? traffic.pause_timeout_ms : 0;
        }
        if (stopped) {
            route.stopped = true; // deploy-proxy answers 503 "APP is stopped"
        } else if (scaled_to_zero) {
            route.scaled_to_zero = true;
        } else if (asleep) {
            route.wake_timeout_ms = wake_timeout(*config).count();
            if (auto error = m_wake_errors.find(app); error != m_wake_errors.end())
                route.wake_error = error->second;
        } else if (is_static) {
            route.static_root = static_root(app, production->id, *config).string();
            route.spa = config->static_site->spa;
        } else {
            route.upstream = upstreams.front();
            if (upstreams.size() > 1)
                route.upstreams = std::move(upstreams);
            route.instances = std::move(instances);
            if (config)
                route.limits = config->proxy;
            add_canary_side(app, production->id, route);
        }
        auto hosts =
            config ? route_hosts(app, *config) : std::vector<std::string>{app + ".localhost"};
        for (const auto& host : hosts) {
            auto taken = std::find_if(routes.begin(), routes.end(),
                                      [&](const Route& r) { return r.host == host; });
            if (taken != routes.end()) { // the proxy refuses a table with duplicate hosts
                common::log_warn("domain " + host + " of " + app + " is already routed to " +
                                 taken->app + "; ignoring it");
                continue;
            }
            route.host = host;
            routes.push_back(route);
        }
    }
    return routes;
}

common::Status Engine::publish_routes() {
    // Held throughout: the table is made from one view of the database and
    // the candidates, and two publishes never interleave.
    std::lock_guard lock(m_routes_mutex);
    auto table = routing_table_locked();
    auto published = m_publisher.publish(table);
    m_routes_stale = !published;
    if (m_certificates) {
        std::vector<std::string> hosts;
        for (const auto& route : table)
            hosts.push_back(route.host);
        m_certificates->set_hosts(hosts);
    }
    return published;
}

void Engine::publish_routes_or_log(std::string_view why) {
    if (auto published = publish_routes(); !published)
        common::log_error("routing table not published " + std::string(why) + ": " +
                          published.error().message + "; publishing it again shortly");
}

// The proxy routes no new request to the replaced release any more (the switch
// waited for it to apply the table). Its requests in flight finish: wait until
// nothing has talked to its port for k_drain_quiet, at most deploy.drain.
void Engine::wait_drained(const std::vector<int>& ports, std::chrono::milliseconds drain) {
    if (ports.empty()) {
        sleep_unless_stopping(drain);
        return;
    }
    const auto deadline = std::chrono::steady_clock::now() + drain;
    auto quiet = std::chrono::milliseconds(0);
    while (quiet < k_drain_quiet && !stopping()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left <= std::chrono::milliseconds(0))
            return;
        auto step = std::min(k_drain_poll, left);
        sleep_unless_stopping(step);
        const bool idle = std::all_of(ports.begin(), ports.end(), [](int port) {
            return runtime::port_activity(static_cast<std::uint16_t>(port)).idle();
        });
        quiet = idle ? quiet + step : std::chrono::milliseconds(0);
    }
}

void Engine::start_drain(const std::string& app, Job job) {
    if (job.previous.empty())
        return;
    join_drainers(false);
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::lock_guard lock(m_drainers_mutex);
    if (stopping())
        return; // the next start stops it (INACTIVE with a live pid)
    const auto generation = ++m_drain_count;
    m_drain_generation[app + "/" + job.previous] = generation;
    // A standby kept across a restart replaces none of the others kept with it.
    const auto replaced_count = job.standby_rearmed ? m_replaced[app] : ++m_replaced[app];
    std::thread thread([this, app, job = std::move(job), done, generation, replaced_count] {
        drain_off_lock(app, job, generation, replaced_count);
        done->store(true);
    });
    m_drainers.push_back({std::move(thread), std::move(done)});
}

void Engine::join_drainers(bool all) {
    std::list<Drainer> finished;
    {
        std::lock_guard lock(m_drainers_mutex);
        for (auto it = m_drainers.begin(); it != m_drainers.end();) {
            if (all || it->done->load()) {
                finished.push_back(std::move(*it));
                it = m_drainers.erase(it);
            } else {
                ++it;
            }
        }
    }
    for (auto& drainer : finished)
        if (drainer.thread.joinable())
            drainer.thread.join();
}

void Engine::drain_off_lock(const std::string& app, const Job& job, std::uint64_t generation,
                            std::uint64_t replaced_count) {
    const auto key = app + "/" + job.previous;
    // Whether this drainer still owns the release: not promoted again, the same process,
    // and no later drainer took it over.
    const auto& process = job.previous_process;
    auto still_mine = [&](const std::optional<ReleaseRow>& row) {
        if (!row || row->state == State::production || row->state == State::canary ||
            row->pid != process.pid)
            return false;
        std::lock_guard lock(m_drainers_mutex);
        return m_drain_generation[key] == generation;
    };
    // Whether no switch replaced another release of the app since this one: only the
    // release the last switch replaced stays warm (one copy of the app, not one per deploy
    // of the window, each with its release's files kept on disk until it stops).
    auto last_replaced = [&] {
        std::lock_guard lock(m_drainers_mutex);
        return m_replaced[app] == replaced_count;
    };
    auto current = [&]() -> std::optional<ReleaseRow> {
        auto row = m_store->get(app, job.previous);
        return row ? std::optional<ReleaseRow>(std::move(*row)) : std::nullopt;
    };
    const auto standby_file = m_options.data_dir.release_standby(app, job.previous);
    std::error_code no_file;
    fs::remove(standby_file, no_file); // a window of an earlier drain is over
    if (!job.standby_rearmed)
        common::log_info("draining " + app + " " + job.previous);
    auto replaced = current();
    const auto old_config = replaced ? common::parse_config(replaced->config, "deploy.toml")
                                     : common::Result<common::AppConfig>(common::AppConfig{});
    const auto stop_timeout = old_config ? old_config->deploy.stop_timeout : k_stop_grace;
    {
        // Its other processes take no requests: they stop now. Under the lock, so
        // that a rollback to it (which starts them again) comes before or after.
        std::lock_guard deploy(slot(app).deploy_lock);
        if (stopping() || !still_mine(current()))
            return;
        stop_processes(app, job.previous, stop_timeout, Which::others);
    }
    // Off the lock: its requests in flight finish while the next deploy goes on.
    wait_drained(replaced ? web_ports(*replaced) : std::vector<int>{}, job.config.deploy.drain);
    if (job.standby.count() > 0 && still_mine(current()) && last_replaced()) {
        common::log_info(fmt::format("{} {} stays in standby for {} (deployctl rollback to it is "
                                     "a routing switch)",
                                     app, job.previous, common::format_duration(job.standby)));
        const auto until = std::chrono::steady_clock::now() + job.standby;
        // Until when, for an agent that restarts meanwhile (Engine::rearm_standby).
        const auto until_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(
                (std::chrono::system_clock::now() + job.standby).time_since_epoch())
                .count();
        (void)common::write_unsynced(standby_file, std::to_string(until_ms), false);
        while (std::chrono::steady_clock::now() < until) {
            if (!sleep_unless_stopping(std::min<std::chrono::milliseconds>(
                    k_standby_poll, std::chrono::duration_cast<std::chrono::milliseconds>(
                                        until - std::chrono::steady_clock::now()))))
                return; // the agent stops: the next start keeps it for the rest
            if (!still_mine(current()))
                return; // promoted again (a warm rollback), or stopped by someone else
            if (!last_replaced()) {
                common::log_info(fmt::format("{} {} leaves standby: a later switch replaced "
                                             "another release, which stays warm instead",
                                             app, job.previous));
                break;
            }
        }
    }
    if (stopping())
        return; // the next start keeps it for the rest of its window, or stops it
    fs::remove(standby_file, no_file);
    std::lock_guard deploy(slot(app).deploy_lock);
    // Read again under the lock: a rollback may have promoted it meanwhile.
    auto old = current();
    if (stopping() || !still_mine(old))
        return;
    runtime_for(*old).stop({app, job.previous}, process, k_stop_grace);
    stop_processes(app, job.previous, stop_timeout, Which::web); // web.2 and on
    if (auto cleared = m_store->clear_process(app, job.previous); !cleared)
        common::log_error(cleared.error().message);
    prune(app, job.config.deploy.keep);
}

common::Status Engine::delete_release(const ReleaseRow& row, const std::string& reason) {
    std::lock_guard lock(m_delete_mutex);
    auto& runtime = runtime_for(row);
    const runtime::AppProcess process{row.pid, row.pid_start};
    if (runtime.alive(process))
        runtime.stop({row.app, row.id}, process, k_stop_grace);
    stop_processes(row.app, row.id, k_stop_grace);
    runtime.remove({row.app, row.id});
    // The files first, the row last: a release whose files could not all be
    // removed stays in the state (the next prune, or rm, tries again), so no
    // file outlives the release that owns it.
    const auto& data = m_options.data_dir;
    std::vector<fs::path> paths{data.release_dir(row.app, row.id),
                                data.event_log(row.app, row.id),
                                data.app_log(row.app, row.id),
                                data.release_blobs(row.app, row.id),
                                data.release_env_at_start(row.app, row.id),
                                data.release_standby(row.app, row.id)};
    if (auto config = common::parse_config(row.config, "deploy.toml"))
        for (const auto& [name, command] : config->processes)
            paths.push_back(data.process_log(row.app, row.id, name));
    for (const auto& path : paths) {
        std::error_code ec;
        fs::remove_all(path, ec);
        if (ec)
            return make_error(ErrorKind::io, "cannot delete " + row.app + " " + row.id +
                                                 ": cannot remove " + path.string() + ": " +
                                                 common::os_error_text(ec.value()) +
                                                 "; it stays listed and is tried again");
    }
    auto removed = db_write([&] { return m_store->remove(row.app, row.id, reason); });
    if (!removed && removed.error().kind != ErrorKind::not_found)
        return make_error(removed.error().kind, "cannot delete " + row.app + " " + row.id + ": " +
                                                    removed.error().message +
                                                    "; it stays listed and is tried again");
    common::log_info("deleted " + row.app + " " + row.id + " (" + reason + ")");
    return {};
}

// Keeps the newest `keep` INACTIVE releases (rollback targets) and, apart
// from them, the newest `keep` FAILED ones (for their logs): a run of failed
// deploys never pushes out what a rollback needs.
void Engine::prune(const std::string& app, int keep) {
    int inactive = 0;
    int failed = 0;
    bool deleted_any = false;
    for (const auto& row : m_store->releases(app)) {
        if (!common::can_delete(row.state))
            continue;
        {
            std::lock_guard lock(m_mutex);
            if (m_busy.count(app + "/" + row.id))
                continue;
        }
        int& kept = row.state == State::failed ? failed : inactive;
        if (kept++ < keep || row.pid > 0)
            continue;
        if (auto deleted = delete_release(row, "pruned: keep = " + std::to_string(keep)); !deleted)
            common::log_warn(deleted.error().message);
        else
            deleted_any = true;
    }
    if (deleted_any) { // the blobs only they used go too, and builds no release has
        drop_unused_builds(app);
        collect_after_prune();
    }
}

common::Result<ReleaseRow> Engine::rollback_target(const std::string& app,
                                                   const std::optional<std::string>& id) {
    auto rows = m_store->releases(app);
    if (rows.empty())
        return make_error(ErrorKind::not_found, "no app named " + app);
    if (id) {
        auto row = m_store->get(app, *id);
        if (!row)
            return row.error();
        if (!common::can_promote(row->state))
            return make_error(ErrorKind::refused,
                              "release " + *id + " is " +
                                  std::string(common::to_string(row->state)) +
                                  "; only an INACTIVE release can be rolled back to");
        return row;
    }
    // The release that served before the current one (docs/design.md §8).
    auto previous = previous_release(m_store->switches(app), rows);
    if (!previous)
        return previous.error();
    return m_store->get(app, *previous);
}

common::Result<Promotion> Engine::rollback(const std::string& app,
                                           const std::optional<std::string>& id) {
    if (!m_started)
        return make_error(ErrorKind::internal, "the deployment engine is not running");
    std::lock_guard deploy(slot(app).deploy_lock);
    auto target = rollback_target(app, id);
    if (!target)
        return target.error();
    auto config = common::parse_config(target->config, "deploy.toml");
    if (!config)
        return config.error();
    const std::string busy_key = app + "/" + target->id;
    {
        std::lock_guard lock(m_mutex);
        m_busy.insert(busy_key);
    }
    struct Unbusy {
        Engine& engine;
        const std::string& key;
        ~Unbusy() {
            std::lock_guard lock(engine.m_mutex);
            engine.m_busy.erase(key);
        }
    } unbusy{*this, busy_key};
    EventLog events(m_options.data_dir.event_log(app, target->id), target->id);
    events.log("system", "rolling back to " + target->id);
    if (!config->release.command.empty())
        events.log("system",
                   "release command not run again on rollback: " + config->release.command);
    // Warm: still running ([deploy] standby), it is routed again as it is.
    common::Result<runtime::AppProcess> process =
        runtime::AppProcess{target->pid, target->pid_start};
    bool same_env = false; // the running process has the app's variables as they are now
    {
        std::lock_guard lock(m_mutex);
        auto started = m_env_at_start.find(app + "/" + target->id);
        same_env = started != m_env_at_start.end() && started->second == m_env_changes[app];
    }
    const bool running = target->pid > 0 && runtime_for(*target).alive(*process);
    if (running && same_env) {
        events.log("system", "warm rollback: " + target->id + " is still running (standby)");
    } else {
        if (running) { // its environment changed since it started: a fresh start
            events.log("system", "the app's variables changed since " + target->id +
                                     " started: starting it again");
            runtime_for(*target).stop({app, target->id}, *process, k_stop_grace);
            stop_processes(app, target->id, config->deploy.stop_timeout, Which::web);
        }
        process = provision(app, target->id, *config, events);
        if (!process) {
            events.log("system", "rollback failed: " + process.error().message);
            return make_error(ErrorKind::failed,
                              "rollback to " + target->id + " failed: " + process.error().message);
        }
    }
    auto previous = activate(app, target->id, State::inactive, events);
    if (!previous) {
        stop_process(app, target->id, *config, *process);
        stop_processes(app, target->id, config->deploy.stop_timeout);
        return previous.error();
    }
    runtime_for(app, target->id, *config).serving({app, target->id});
    if (auto started = start_processes(app, target->id, *config, events); !started)
        common::log_warn(app + " " + target->id + ": " + started.error().message +
                         "; the supervisor tries again");
    common::log_info("rolled " + app + " back to " + target->id);
    Job job;
    job.config = *config;
    job.standby = config->deploy.standby;
    if (*previous) {
        auto old = m_store->get(app, **previous);
        job.previous = **previous;
        if (old)
            job.previous_process = {old->pid, old->pid_start};
    }
    start_drain(app, std::move(job)); // off the deploy lock: the next rollback never waits
    auto promoted = release(app, target->id);
    if (!promoted)
        return promoted.error();
    return Promotion{std::move(*promoted), *previous, config->release.command};
}

common::Status Engine::remove(const std::string& app, const std::string& id) {
    if (!m_started)
        return make_error(ErrorKind::internal, "the deployment engine is not running");
    auto row = m_store->get(app, id);
    if (!row)
        return row.error();
    std::string state(common::to_string(row->state));
    if (row->state == State::production)
        return make_error(ErrorKind::refused, "release " + id +
                                                  " is PRODUCTION and cannot be removed; roll "
                                                  "back or deploy another release first");
    if (!common::can_delete(row->state))
        return make_error(ErrorKind::refused, "release " + id + " is " + state +
                                                  " and cannot be removed until it settles");
    {
        std::lock_guard lock(m_mutex);
        if (m_busy.count(app + "/" + id))
            return make_error(ErrorKind::refused,
                              "release " + id + " is being rolled back to and cannot be removed");
    }
    return delete_release(*row, "removed on request");
}

} // namespace agent
