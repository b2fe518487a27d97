// deployctl apps, stop, start, restart and destroy: an app's PRODUCTION
// release kept stopped or started again, and an app removed with everything
// it left on the agent.
#include <agent/deploy/engine.hpp>
#include <agent/runtime/process.hpp>
#include <common/fs.hpp>
#include <common/hash.hpp>
#include <common/log.hpp>
#include <common/tree.hpp>

#include <algorithm>
#include <iterator>
#include <set>
#include <sstream>

namespace agent {

namespace fs = std::filesystem;
using common::ErrorKind;
using common::make_error;
using common::State;

namespace {

void add_lines(const std::string& text, std::set<std::string>& out) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (common::is_sha256_hex(line))
            out.insert(line);
}

// A release recorded before its blob list was: the digests of its tree's
// regular files (the sources it was materialized from, and build outputs,
// which name no blob).
void add_tree_digests(const fs::path& dir, std::set<std::string>& out) {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        std::error_code kind;
        if (it->is_symlink(kind) || !it->is_regular_file(kind))
            continue;
        if (auto digest = common::sha256_file(it->path()))
            out.insert(*digest);
    }
}

} // namespace

std::string Engine::app_state(const std::string& app,
                              const std::optional<ReleaseRow>& production) const {
    if (!production)
        return "no_release";
    if (m_store->stopped(app))
        return "stopped";
    auto* runtime = running_runtime(*production);
    if (runtime && m_store->traffic(app).sleeping)
        return "sleeping"; // [deploy] idle_stop: the next request starts it
    if (!runtime)          // [static]: deploy-proxy serves its files
        return "running";
    if (instances_of(app, "web") == 0)
        return "running"; // deployctl scale web=0: its other processes run
    return runtime->alive({production->pid, production->pid_start}) ? "running" : "failed";
}

common::Status Engine::known_app(const std::string& app) {
    if (!m_started)
        return make_error(ErrorKind::internal, "the deployment engine is not running");
    if (m_store->releases(app).empty())
        return make_error(ErrorKind::not_found,
                          "no app named '" + app + "' on this agent (deployctl apps lists them)");
    return {};
}

common::Result<ReleaseRow> Engine::production_of(const std::string& app, const char* verb) {
    TRY(known_app(app));
    auto production = m_store->production(app);
    if (!production)
        return make_error(ErrorKind::refused, "cannot " + std::string(verb) + " " + app +
                                                  ": it has no release in PRODUCTION; deploy "
                                                  "it first (deployctl deploy)");
    return *production;
}

void Engine::record_blobs(const std::string& app, const std::string& id,
                          const NewDeployment& deployment) {
    std::string text;
    for (const auto& digest : *deployment.blob_digests) // set by create_deployment
        text += digest + "\n";
    // The tree's nodes (common/tree.hpp) are kept with its blobs, listed with them so
    // that a collection keeps or takes them together: a stored node's whole tree is
    // stored, which lets the next deploy of a tree that shares it skip all of it. Those
    // of a tree the deployment named are the client's (checked as they were read), else
    // built here.
    std::vector<BlobStore::Written> nodes;
    auto keep = [&](const std::string& digest, const std::string& bytes) {
        if (auto written = m_blobs.write_temp(digest, bytes))
            nodes.push_back(std::move(*written));
    };
    if (!deployment.tree_nodes.empty()) {
        for (const auto& digest : deployment.tree_nodes) {
            text += digest + "\n";
            if (auto it = deployment.unstored_nodes.find(digest);
                it != deployment.unstored_nodes.end() && !m_blobs.has(digest))
                keep(digest, it->second);
        }
    } else {
        for (const auto& [digest, node] : common::build_tree(deployment.manifest).nodes) {
            text += digest + "\n";
            if (!m_blobs.has(digest))
                keep(digest, node.bytes);
        }
    }
    if (auto stored = m_blobs.adopt_verified(nodes); !stored) // a later upload sends them again
        common::log_warn("cannot store the tree of " + app + " " + id + ": " +
                         stored.error().message);
    const auto file = m_options.data_dir.release_blobs(app, id);
    std::error_code ec;
    fs::create_directories(file.parent_path(), ec);
    if (auto written = common::atomic_write_file(file, text); !written)
        common::log_warn("cannot record the blobs of " + app + " " + id + ": " +
                         written.error().message);
}

bool Engine::release_digests(const ReleaseRow& row, std::set<std::string>& out) const {
    const auto& data = m_options.data_dir;
    if (auto text = common::read_file(data.release_blobs(row.app, row.id))) {
        add_lines(*text, out);
        return true;
    }
    std::error_code ec;
    if (!fs::is_directory(data.release_dir(row.app, row.id), ec))
        return false;
    add_tree_digests(data.release_dir(row.app, row.id), out);
    return true;
}

std::pair<int, int> Engine::remove_unshared_blobs(const std::string& app,
                                                  const std::vector<ReleaseRow>& rows) {
    // As a collection: a deployment of another app recorded meanwhile, or a
    // blob pinned for one in progress, keeps what it uses.
    std::lock_guard collecting(m_collect_mutex);
    std::set<std::string> mine;
    for (const auto& row : rows)
        release_digests(row, mine);
    std::set<std::string> others;
    for (const auto& row : m_store->all_releases())
        if (row.app != app)
            release_digests(row, others);
    std::set<std::string> unshared;
    std::set_difference(mine.begin(), mine.end(), others.begin(), others.end(),
                        std::inserter(unshared, unshared.end()));
    // A collection that keeps every stored blob but those: a pinned one stays
    // too (and one stored since the listing is pinned, as every upload is).
    std::set<std::string> keep;
    for (const auto& blob : m_blobs.list())
        if (!unshared.count(blob.digest))
            keep.insert(blob.digest);
    const int removed = static_cast<int>(m_blobs.collect(keep, false).size());
    const int kept = static_cast<int>(
        std::count_if(mine.begin(), mine.end(), [&](const auto& d) { return m_blobs.has(d); }));
    return {removed, kept};
}

void Engine::clear_stopped(const std::string& app, const std::string& id, const EventLog& events) {
    if (!m_store->stopped(app))
        return;
    if (auto started = m_store->set_stopped(app, false, "started again: " + id + " serves it");
        !started) {
        common::log_error(started.error().message);
        return;
    }
    events.log("system",
               app + " was stopped (deployctl stop); it is started again and " + id + " serves it");
    common::log_info(app + " was stopped; started again by the switch to " + id);
}

common::Result<runtime::AppProcess> Engine::start_production(const ReleaseRow& row,
                                                             const common::AppConfig& config,
                                                             const std::string& note,
                                                             bool mark_serving) {
    EventLog events(m_options.data_dir.event_log(row.app, row.id), row.id);
    events.log("system", note);
    auto process = launch_and_check(row.app, row.id, config, events);
    if (!process) {
        // launch_and_check recorded the new process: put the one before back.
        if (auto restored = m_store->set_process(row.app, row.id, row.port, row.pid, row.pid_start);
            !restored)
            common::log_error(restored.error().message);
        events.log("system", "start failed: " + process.error().message);
        return make_error(ErrorKind::failed, "cannot start " + row.app + " " + row.id + ": " +
                                                 process.error().message + " (deployctl logs " +
                                                 row.id + " shows its output)");
    }
    if (mark_serving)
        runtime_for(row.app, row.id, config).serving({row.app, row.id});
    {
        std::lock_guard lock(m_mutex);
        m_backoff.erase(row.app);
    }
    clear_sleeping(row.app); // the next table routes it
    return process;
}

common::Result<AppAction> Engine::stop_app(const std::string& app) {
    if (!m_started)
        return make_error(ErrorKind::internal, "the deployment engine is not running");
    std::lock_guard deploy(slot(app).deploy_lock);
    auto row = production_of(app, "stop");
    if (!row)
        return row.error();
    if (m_store->stopped(app))
        return AppAction{app, row->id, "stopped", false, 0};
    TRY(db_write([&] { return m_store->set_stopped(app, true, "stopped on request"); }));
    end_cron_runs(app); // its [[cron]] jobs do not run while it is stopped
    // deploy-proxy answers 503 from now on; if it cannot be told, nothing stops.
    if (auto published = publish_routes(); !published) {
        if (auto running = db_write([&] {
                return m_store->set_stopped(app, false,
                                            "not stopped: " + published.error().message);
            });
            !running)
            common::log_error(running.error().message);
        publish_routes_or_log("after a failed stop");
        // Its kind kept, as start's and restart's: a table not acknowledged is a timeout (4).
        return make_error(published.error().kind, "cannot stop " + app + ": " +
                                                      published.error().message + "; " + row->id +
                                                      " keeps running and serving");
    }
    if (auto* runtime = running_runtime(*row)) {
        runtime->stop({app, row->id}, {row->pid, row->pid_start}, k_stop_grace);
        if (auto cleared = m_store->clear_process(app, row->id); !cleared)
            common::log_error(cleared.error().message);
    }
    if (auto config = common::parse_config(row->config, "deploy.toml"))
        stop_processes(app, row->id, config->deploy.stop_timeout);
    // Replaced releases still running in standby ([deploy] standby) stop too: nothing of a
    // stopped app runs (their drainers see the process gone and leave them be).
    for (const auto& other : m_store->releases(app)) {
        if (other.state != State::inactive || other.pid <= 0)
            continue;
        runtime_for(other).stop({app, other.id}, {other.pid, other.pid_start}, k_stop_grace);
        stop_processes(app, other.id, k_stop_grace);
        if (auto cleared = m_store->clear_process(app, other.id); !cleared)
            common::log_error(cleared.error().message);
    }
    EventLog(m_options.data_dir.event_log(app, row->id), row->id)
        .log("system", "stopped (deployctl stop)");
    common::log_info("stopped " + app + " " + row->id);
    return AppAction{app, row->id, "stopped", true, 0};
}

common::Result<AppAction> Engine::start_app(const std::string& app) {
    if (!m_started)
        return make_error(ErrorKind::internal, "the deployment engine is not running");
    std::lock_guard deploy(slot(app).deploy_lock);
    auto row = production_of(app, "start");
    if (!row)
        return row.error();
    const bool stopped = m_store->stopped(app);
    auto* runtime = running_runtime(*row);
    if (runtime && instances_of(app, "web") == 0)
        runtime = nullptr; // deployctl scale web=0: no web process to start
    const runtime::AppProcess old{row->pid, row->pid_start};
    const bool alive = runtime && row->pid > 0 && runtime->alive(old);
    if (!stopped && (!runtime || alive))
        return AppAction{app, row->id, "running", false, row->pid};
    int pid = 0;
    std::optional<runtime::AppProcess> started;
    std::optional<common::AppConfig> config;
    if (runtime) {
        if (alive) // stopped, yet running: left by an agent killed while stopping it
            runtime->stop({app, row->id}, old, k_stop_grace);
        auto parsed = common::parse_config(row->config, "deploy.toml");
        if (!parsed)
            return parsed.error();
        config = std::move(*parsed);
        auto process = start_production(*row, *config, "starting (deployctl start)");
        if (!process)
            return process.error();
        started = *process;
        pid = process->pid;
    }
    // Routed only once the proxy has the new table: else the app stays as it
    // was (stopped, its new process stopped again).
    auto undo = [&](const common::Error& error) -> common::Error {
        if (stopped)
            if (auto kept = db_write([&] {
                    return m_store->set_stopped(app, true, "not started: " + error.message);
                });
                !kept)
                common::log_error(kept.error().message);
        if (started && stopped) {
            runtime->stop({app, row->id}, *started, k_stop_grace);
            if (auto cleared = db_write([&] { return m_store->clear_process(app, row->id); });
                !cleared)
                common::log_error(cleared.error().message);
        }
        publish_routes_or_log("after a failed start");
        return make_error(error.kind, "cannot start " + app + " " + row->id + ": " + error.message);
    };
    if (stopped)
        if (auto cleared =
                db_write([&] { return m_store->set_stopped(app, false, "started on request"); });
            !cleared)
            return undo(cleared.error());
    if (auto published = publish_routes(); !published)
        return undo(published.error());
    if (!config)
        if (auto parsed = common::parse_config(row->config, "deploy.toml"))
            config = std::move(*parsed);
    if (config) { // its other processes; one that cannot start is retried by the supervisor
        EventLog events(m_options.data_dir.event_log(app, row->id), row->id);
        if (auto others = start_processes(app, row->id, *config, events); !others)
            common::log_warn(app + " " + row->id + ": " + others.error().message);
    }
    common::log_info("started " + app + " " + row->id);
    return AppAction{app, row->id, "running", true, pid};
}

common::Result<AppAction> Engine::restart_app(const std::string& app) {
    if (!m_started)
        return make_error(ErrorKind::internal, "the deployment engine is not running");
    std::lock_guard deploy(slot(app).deploy_lock);
    auto row = production_of(app, "restart");
    if (!row)
        return row.error();
    auto* runtime = running_runtime(*row);
    if (runtime && instances_of(app, "web") == 0)
        runtime = nullptr; // deployctl scale web=0: no web process to start
    auto config = common::parse_config(row->config, "deploy.toml");
    if (!config)
        return config.error();
    // Its processes other than web: stopped (stop_timeout), then started again.
    auto restart_others = [&] {
        EventLog events(m_options.data_dir.event_log(app, row->id), row->id);
        stop_processes(app, row->id, config->deploy.stop_timeout, Which::others);
        if (auto others = start_processes(app, row->id, *config, events); !others)
            common::log_warn(app + " " + row->id + ": " + others.error().message);
    };
    if (!runtime && config->static_site)
        return make_error(ErrorKind::refused,
                          app + " " + row->id +
                              " is a [static] site: deploy-proxy serves its files and no process "
                              "runs to restart");
    if (!runtime) { // worker-only
        if (m_store->stopped(app)) {
            TRY(db_write(
                [&] { return m_store->set_stopped(app, false, "started on request (restart)"); }));
            publish_routes_or_log("after a restart");
        }
        restart_others();
        common::log_info("restarted " + app + " " + row->id);
        return AppAction{app, row->id, "running", true, 0};
    }
    const bool stopped = m_store->stopped(app);
    const runtime::AppProcess old{row->pid, row->pid_start};
    const bool alive = row->pid > 0 && runtime->alive(old);
    const bool in_place = runtime->name() != "process"; // one container per release
    if (alive && in_place) {
        // The container's name is the release's: the old one goes first (the
        // proxy answers 502 until the new one is healthy).
        runtime->stop({app, row->id}, old, k_stop_grace);
        if (auto cleared = m_store->clear_process(app, row->id); !cleared)
            common::log_error(cleared.error().message);
    }
    auto process = start_production(*row, *config, "restarting (deployctl restart)");
    if (!process)
        return process.error();
    // New requests go to the new process once the proxy has the table; if it
    // cannot be told, the old process (still running) is recorded and routed
    // again and the new one stops.
    auto undo = [&](const common::Error& error) -> common::Error {
        if (alive && !in_place) {
            if (auto restored = db_write([&] {
                    return m_store->set_process(app, row->id, row->port, row->pid, row->pid_start);
                });
                !restored)
                common::log_error(restored.error().message);
            else
                runtime->stop({app, row->id}, *process, k_stop_grace);
        }
        if (stopped) {
            if (auto kept = db_write([&] {
                    return m_store->set_stopped(app, true, "not restarted: " + error.message);
                });
                !kept)
                common::log_error(kept.error().message);
            else if (!(alive && !in_place)) { // stays stopped: its new process goes too
                runtime->stop({app, row->id}, *process, k_stop_grace);
                if (auto cleared = db_write([&] { return m_store->clear_process(app, row->id); });
                    !cleared)
                    common::log_error(cleared.error().message);
            }
        }
        publish_routes_or_log("after a failed restart");
        return make_error(error.kind, "cannot restart " + app + " " + row->id + ": " +
                                          error.message +
                                          (alive && !in_place ? "; the running process keeps "
                                                                "serving"
                                                              : ""));
    };
    if (stopped)
        if (auto cleared = db_write(
                [&] { return m_store->set_stopped(app, false, "started on request (restart)"); });
            !cleared)
            return undo(cleared.error());
    if (auto published = publish_routes(); !published)
        return undo(published.error());
    restart_others();
    if (alive && !in_place) {
        wait_drained({row->port}, config->deploy.drain);
        runtime->stop({app, row->id}, old, k_stop_grace);
    }
    // web.2 and on (deployctl scale), one at a time while the others serve.
    restart_web_instances(app, row->id, *config,
                          EventLog(m_options.data_dir.event_log(app, row->id), row->id));
    common::log_info("restarted " + app + " " + row->id + " (pid " + std::to_string(process->pid) +
                     ")");
    return AppAction{app, row->id, "running", true, process->pid};
}

common::Result<Destroyed> Engine::destroy_app(const std::string& app) {
    if (!m_started)
        return make_error(ErrorKind::internal, "the deployment engine is not running");
    auto& my = slot(app);
    // A deployment or rollback in progress refuses; a drain (the worker
    // stopping a replaced release) is waited for.
    auto busy = [&]() -> common::Status {
        bool queued = false;
        {
            std::lock_guard lock(m_mutex);
            queued = !my.queue.empty(); // deployments only (drains run off it)
            for (const auto& key : m_busy)
                queued = queued || key.rfind(app + "/", 0) == 0;
        }
        for (const auto& row : m_store->releases(app))
            if (row.state != State::production && !common::can_delete(row.state))
                queued = true;
        if (queued)
            return make_error(ErrorKind::refused,
                              "a deployment or rollback of " + app +
                                  " is in progress; destroy it once that has ended");
        return {};
    };
    TRY(busy());
    std::unique_lock deploy(my.deploy_lock);
    TRY(busy()); // one may have begun while this waited
    // The spare tree's folder goes with the app's.
    settle_spare(app, my, true);
    my.spare.reset();
    my.spare_wanted.reset();
    my.cache_copier.reset(); // cancelled: its folder goes with the app's
    my.cache_copy.reset();
    auto rows = m_store->releases(app);
    if (rows.empty() && m_store->env(app).empty() && !m_store->data_key(app))
        return make_error(ErrorKind::not_found,
                          "no app named '" + app + "' on this agent (deployctl apps lists them)");
    Destroyed destroyed;
    destroyed.app = app;
    if (!rows.empty()) {
        TRY(db_write([&] { return m_store->set_stopped(app, true, "stopped: being destroyed"); }));
        publish_routes_or_log("for " + app + "'s destroy"); // 503 while its processes go
    }
    for (const auto& row : rows) {
        auto& runtime = runtime_for(row);
        const runtime::AppProcess process{row.pid, row.pid_start};
        if (row.pid > 0 && runtime.alive(process))
            runtime.stop({app, row.id}, process, k_stop_grace);
        stop_processes(app, row.id, k_stop_grace);
        runtime.remove({app, row.id}); // the container and the image
        destroyed.releases.push_back(row.id);
    }
    end_cron_runs(app);
    std::tie(destroyed.blobs_removed, destroyed.blobs_kept) = remove_unshared_blobs(app, rows);
    TRY(db_write([&] {
        return m_store->destroy_app(app, "app destroyed on request (" +
                                             std::to_string(rows.size()) + " releases)");
    }));
    publish_routes_or_log("for " + app +
                          "'s destroy"); // the proxy's unknown-app answer from now on
    // The app's folder, and the repository git push received into (docs/git.md).
    for (const auto& dir : {m_options.data_dir.app_dir(app), m_options.data_dir.git_repo(app)}) {
        std::error_code ec;
        fs::remove_all(dir, ec);
        if (ec)
            common::log_warn("cannot remove " + dir.string() + ": " + ec.message());
    }
    {
        std::lock_guard lock(m_mutex);
        m_backoff.erase(app);
    }
    common::log_info("destroyed " + app + ": " + std::to_string(rows.size()) + " releases, " +
                     std::to_string(destroyed.blobs_removed) + " blobs removed, " +
                     std::to_string(destroyed.blobs_kept) + " kept (used by other apps)");
    return destroyed;
}

} // namespace agent

namespace agent {

common::Result<Traffic> Engine::traffic(const std::string& app) {
    TRY(known_app(app));
    return m_store->traffic(app);
}

common::Result<Traffic> Engine::change_traffic(const std::string& app, std::string_view what,
                                               const std::function<common::Status()>& change) {
    TRY(known_app(app));
    const Traffic before = m_store->traffic(app);
    TRY(db_write(change));
    if (auto published = publish_routes(); !published) {
        if (auto undone = db_write([&]() -> common::Status {
                TRY(m_store->set_maintenance(
                    app, before.maintenance, before.message, before.retry_after,
                    std::string(what) + " undone: " + published.error().message));
                return m_store->set_paused(app, before.paused, before.pause_timeout_ms,
                                           std::string(what) + " undone");
            });
            !undone)
            common::log_error(undone.error().message);
        publish_routes_or_log("after a failed traffic change");
        return make_error(ErrorKind::io, "cannot " + std::string(what) + " " + app + ": " +
                                             published.error().message + "; nothing changed");
    }
    if (auto production = m_store->production(app))
        EventLog(m_options.data_dir.event_log(app, production->id), production->id)
            .log("system", std::string(what) + " (deploy-proxy applied it)");
    common::log_info(std::string(what) + ": " + app);
    return m_store->traffic(app);
}

common::Result<Traffic> Engine::set_maintenance(const std::string& app, bool on,
                                                const std::string& message,
                                                std::int64_t retry_after) {
    const std::string what =
        on ? "maintenance on" + (retry_after ? " (Retry-After " + std::to_string(retry_after) + "s)"
                                             : std::string())
           : std::string("maintenance off");
    return change_traffic(
        app, what, [&] { return m_store->set_maintenance(app, on, message, retry_after, what); });
}

common::Result<Traffic> Engine::set_paused(const std::string& app, bool on,
                                           std::int64_t timeout_ms) {
    const std::string what =
        on ? "paused (requests held up to " + std::to_string(timeout_ms) + "ms)" : "resumed";
    return change_traffic(app, what,
                          [&] { return m_store->set_paused(app, on, timeout_ms, what); });
}

} // namespace agent
