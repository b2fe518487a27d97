// Start-up reconciliation after a restart or crash, and the supervisor thread.
#include <agent/acme/manager.hpp>
#include <agent/deploy/engine.hpp>
#include <agent/deploy/materialize.hpp>
#include <agent/runtime/process.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>

#include <fmt/format.h>

namespace agent {

namespace fs = std::filesystem;
using common::State;

namespace {
constexpr std::chrono::milliseconds k_supervise_interval{500};
constexpr std::chrono::minutes k_collect_interval{10}; // unused blobs are collected
constexpr std::chrono::milliseconds k_max_backoff{30000};

} // namespace

common::Status Engine::start() {
    if (m_started)
        return {};
    std::error_code ec;
    fs::create_directories(m_options.data_dir.root(), ec);
    auto store = Store::open(m_options.data_dir.state_db());
    if (!store)
        return store.error();
    m_store = std::move(*store);
    m_env = std::make_unique<secrets::EnvVars>(*m_store, m_options.data_dir.keys());
    if (auto keyed = m_env->init(); !keyed) // deploys of apps with secrets will say so too
        common::log_error("secrets: " + keyed.error().message);
    if (auto runtimes = open_runtimes(); !runtimes)
        return runtimes;
    auto leftovers = reconcile();
    if (auto wake = open_wake_socket(); !wake) // sleeping apps then wait out their hold
        common::log_error("scale to zero: " + wake.error().message);
    if (m_options.proxy.acme.enabled) { // before the proxy: its folders and on-demand socket
        m_certificates = std::make_unique<acme::Manager>(m_options.proxy.acme, m_options.data_dir,
                                                         m_options.proxy.https_listen,
                                                         [this] { m_proxy.reload(); });
        if (auto opened = m_certificates->open(); !opened)
            return opened;
    }
    if (auto proxy = m_proxy.ensure_running(); !proxy)
        return proxy;
    publish_routes_or_log("at start");
    if (m_certificates)
        m_certificates->start(); // the table just published named the hosts
    // Only now that the proxy routes to PRODUCTION: a release replaced just
    // before the agent died may still have requests in flight. It is drained
    // like any replaced release, then stopped.
    for (auto& row : leftovers) {
        auto config = common::parse_config(row.config, "deploy.toml");
        Job job;
        job.config = config ? *config : common::AppConfig{};
        job.previous = row.id;
        job.previous_process = {row.pid, row.pid_start};
        if (rearm_standby(row, job)) { // on a drainer thread, as after a switch
            start_drain(row.app, std::move(job));
            continue;
        }
        // Off the app's deploy lock too: a deploy right after the restart does not wait.
        common::log_info("draining leftover " + row.app + " " + row.id);
        start_drain(row.app, std::move(job));
    }
    m_started = true;
    m_supervisor = std::thread(&Engine::supervise_loop, this);
    m_cron = std::thread(&Engine::cron_loop, this);
    if (m_wake_fd >= 0)
        m_waker = std::thread(&Engine::wake_loop, this);
    return {};
}

bool Engine::rearm_standby(const ReleaseRow& row, Job& job) {
    const auto& data = m_options.data_dir;
    if (row.state != State::inactive)
        return false;
    auto until_text = common::read_file(data.release_standby(row.app, row.id));
    if (!until_text)
        return false;
    long long until_ms = 0;
    try {
        until_ms = std::stoll(*until_text);
    } catch (const std::exception&) {
        return false;
    }
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    auto& runtime = runtime_for(row);
    const runtime::AppProcess process{row.pid, row.pid_start};
    if (until_ms <= now_ms || !runtime.alive(process))
        return false;
    runtime.adopt({row.app, row.id}, process, data.app_log(row.app, row.id));
    // Warm only with the variables it started with: the count of changes starts again
    // with this process, so the fingerprint kept at its start stands for it.
    const auto at_start = common::read_file(data.release_env_at_start(row.app, row.id));
    if (at_start && *at_start == env_fingerprint(row.app)) {
        std::lock_guard lock(m_mutex);
        m_env_at_start[row.app + "/" + row.id] = m_env_changes[row.app];
    }
    job.standby = std::chrono::milliseconds(until_ms - now_ms);
    job.standby_rearmed = true;
    common::log_info(fmt::format("{} {} is still running: kept in standby for the rest of its "
                                 "window",
                                 row.app, row.id));
    return true;
}

namespace {
// Whether the release's build was done and its [release] command had started.
bool in_release_phase(const EventLog& events) {
    auto text = common::read_file(events.file());
    return text && text->find("\"running release command: ") != std::string::npos;
}
} // namespace

std::vector<ReleaseRow> Engine::reconcile() {
    std::vector<ReleaseRow> leftovers; // replaced releases still running: drained later
    for (const auto& row : m_store->all_releases()) {
        bool replaced = row.state == State::inactive || row.state == State::failed;
        if (replaced && row.pid > 0)
            leftovers.push_back(row);
        else if (!replaced)
            reconcile_release(row);
        // An interrupted start is FAILED now, and drained like a replaced release.
        if (row.state == State::provisioning && row.pid > 0)
            leftovers.push_back(row);
    }
    reconcile_processes();
    remove_leftover_containers();
    // After the loop: a PRODUCTION app that died while the agent was down had its
    // cgroup's OOM count read (recover_production) and was started again.
    if (auto removed = m_process_runtime->remove_leftover_groups(); removed > 0)
        common::log_info("removed " + std::to_string(removed) + " leftover cgroup" +
                         (removed == 1 ? "" : "s") + " of processes that no longer run");
    const auto& data = m_options.data_dir;
    fs::path apps = data.root() / "apps";
    // Temporary files of writes that failed and could not remove them.
    std::vector<fs::path> dirs{data.root(), data.proxy_dir(), data.keys()};
    std::error_code ec;
    for (fs::directory_iterator it(apps, ec), end; !ec && it != end; it.increment(ec)) {
        remove_materialize_leftovers(it->path() / "releases");
        dirs.push_back(it->path() / "manifests");
    }
    for (fs::directory_iterator it(data.blobs(), ec), end; !ec && it != end; it.increment(ec))
        if (it->path().filename() != "tmp") // uploads: BlobStore::remove_stale_uploads
            dirs.push_back(it->path());
    std::size_t temp_files = 0;
    for (const auto& dir : dirs)
        temp_files += common::remove_temp_files(dir);
    if (temp_files > 0)
        common::log_info("removed " + std::to_string(temp_files) +
                         " temporary files left by failed writes");
    return leftovers;
}

void Engine::reconcile_release(const ReleaseRow& row) {
    EventLog events(m_options.data_dir.event_log(row.app, row.id), row.id);
    auto* running = running_runtime(row); // nullptr: a [static] release
    auto& runtime = running ? *running : *m_process_runtime;
    const runtime::AppProcess process{row.pid, row.pid_start};
    const runtime::ReleaseRef release{row.app, row.id};
    bool alive = runtime.alive(process);
    const std::string name = row.app + " " + row.id;
    switch (row.state) {
    case State::queued:
    case State::building:
        // row.pid is the build's process group (a build command or the engine CLI)
        if (row.pid > 0 && runtime::process_matches(row.pid, row.pid_start))
            runtime::terminate_group(row.pid, k_build_kill_grace);
        if (row.pid > 0)
            if (auto cleared = m_store->clear_process(row.app, row.id); !cleared)
                common::log_error(cleared.error().message);
        return fail(row.app, row.id, row.state,
                    in_release_phase(events) ? "interrupted: the agent restarted during the "
                                               "release command"
                                             : "interrupted: the agent restarted during the build",
                    events);
    case State::provisioning:
        // FAILED now, stopped later: the agent may have died after deploy-proxy took a
        // table routing to it and before the switch was recorded. Its process goes once
        // the table of this start (PRODUCTION only) is applied, drained as a leftover.
        return fail(row.app, row.id, row.state,
                    "interrupted: the agent restarted while the release was starting", events);
    case State::production: {
        if (!running)
            return;                      // served by deploy-proxy from its files: nothing runs
        if (m_store->stopped(row.app)) { // deployctl stop: it stays stopped
            if (alive) {                 // an agent killed while stopping it
                runtime.stop(release, process, k_stop_grace);
                if (auto cleared = m_store->clear_process(row.app, row.id); !cleared)
                    common::log_error(cleared.error().message);
            }
            common::log_info(name + " is stopped (deployctl start starts it)");
            return;
        }
        if (m_store->traffic(row.app).sleeping) { // [deploy] idle_stop: a request wakes it
            if (alive) {                          // an agent killed while it fell asleep
                runtime.stop(release, process, k_stop_grace);
                if (auto cleared = m_store->clear_process(row.app, row.id); !cleared)
                    common::log_error(cleared.error().message);
            }
            common::log_info(name + " is asleep (the next request starts it)");
            return;
        }
        if (alive) {
            runtime.adopt(release, process, m_options.data_dir.app_log(row.app, row.id));
            common::log_info("adopted running " + name + " (pid " + std::to_string(row.pid) + ")");
            return;
        }
        if (instances_of(row.app, "web") == 0)
            return; // deployctl scale web=0: its web does not run
        auto reason = recover_production(row);
        if (!reason)
            return;
        if (auto noted = m_store->set_last_exit(
                row.app, row.id, reason->empty() ? "not running after an agent restart" : *reason);
            !noted)
            common::log_error(noted.error().message);
        if (auto restarted = restart_production(
                row, reason->empty() ? "app was not running after an agent restart; restarted"
                                     : *reason + " after an agent restart; started again");
            !restarted)
            common::log_error("cannot restart " + name + ": " + restarted.error().message);
        return;
    }
    case State::canary: // deploy --canary: it keeps its share across the restart
        if (alive) {
            runtime.adopt(release, process, m_options.data_dir.app_log(row.app, row.id));
            common::log_info("adopted running canary " + name + " (pid " + std::to_string(row.pid) +
                             ")");
            return;
        }
        if (auto removed = m_store->remove_canary(row.app); !removed)
            common::log_error(removed.error().message);
        if (auto cleared = m_store->clear_process(row.app, row.id); !cleared)
            common::log_error(cleared.error().message);
        return fail(row.app, row.id, row.state,
                    "canary aborted: not running after an agent restart", events);
    case State::inactive:
    case State::failed:
        return; // reconcile() drains and stops a leftover one once routes are published
    }
}

// Containers this agent labelled whose release is gone or not serving: an
// agent killed between `docker run` and recording the container leaves one.
void Engine::remove_leftover_containers() {
    if (!m_container_runtime)
        return;
    // A release command interrupted by the restart (its release is FAILED by now, or
    // is about to be), or a deployctl run, which ended with the agent's connection:
    // their engine CLI may have died and left the container.
    if (auto removed = m_container_runtime->remove_one_offs(""); removed > 0)
        common::log_info("removed " + std::to_string(removed) + " leftover one-off container" +
                         (removed == 1 ? "" : "s") + " (release command, deployctl run)");
    for (const auto& release : m_container_runtime->instances()) {
        auto row = m_store->get(release.app, release.id);
        if (!release.process.empty()) { // a process other than web: reconcile_processes ran
            auto processes =
                row ? m_store->processes(release.app, release.id) : std::vector<ProcessRow>{};
            if (std::any_of(processes.begin(), processes.end(), [&](const ProcessRow& p) {
                    return p.process == release.process && p.instance == release.instance;
                }))
                continue;
            common::log_info("removing leftover container of " + release.app + " " + release.id +
                             " " + release.process + "." + std::to_string(release.instance));
            m_container_runtime->stop(release, {}, k_stop_grace);
            continue;
        }
        if (row && (row->state == State::production || row->pid > 0))
            continue; // serving, or a replaced release drained by start()
        common::log_info("removing leftover container of " + release.app + " " + release.id);
        m_container_runtime->stop(release, {}, k_stop_grace);
        if (!row)
            m_container_runtime->remove(release);
    }
}

// The PRODUCTION app is not alive by pid; the engine may have restarted it.
// nullopt when nothing more is to be done now, else why the agent must start
// it again (empty when the runtime cannot tell).
std::optional<std::string> Engine::recover_production(const ReleaseRow& row) {
    auto& runtime = runtime_for(row);
    auto recovery = runtime.recover({row.app, row.id}, m_options.data_dir.app_log(row.app, row.id));
    if (recovery.kind == runtime::Runtime::Recovery::pending)
        return std::nullopt;
    if (recovery.kind == runtime::Runtime::Recovery::none)
        return recovery.note;
    if (auto recorded = m_store->set_process(row.app, row.id, row.port, recovery.process.pid,
                                             recovery.process.start);
        !recorded)
        common::log_error(recorded.error().message);
    EventLog(m_options.data_dir.event_log(row.app, row.id), row.id).log("system", recovery.note);
    common::log_warn(row.app + " " + row.id + ": " + recovery.note);
    return std::nullopt;
}

common::Status Engine::restart_production(const ReleaseRow& row, const std::string& note) {
    auto config = common::parse_config(row.config, "deploy.toml");
    if (!config)
        return config.error();
    int port = row.port;
    if (port <= 0) {
        auto picked = runtime::pick_free_port(m_options.app_ports);
        if (!picked)
            return picked.error();
        port = *picked;
    }
    auto& runtime = runtime_for(row.app, row.id, *config);
    auto process = start_app(runtime, row.app, row.id, *config, port);
    if (!process)
        return process.error();
    runtime.serving({row.app, row.id});
    auto recorded = m_store->set_process(row.app, row.id, port, process->pid, process->start);
    if (!recorded)
        return recorded;
    if (auto counted = m_store->count_restart(row.app, row.id); !counted)
        common::log_error(counted.error().message);
    EventLog(m_options.data_dir.event_log(row.app, row.id), row.id).log("system", note);
    common::log_warn(row.app + " " + row.id + ": " + note + " (pid " +
                     std::to_string(process->pid) + ")");
    if (port != row.port && m_started)
        publish_routes_or_log("for the restarted " + row.app + " " + row.id);
    return {};
}

bool Engine::restart_due(const std::string& key) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(m_mutex);
    auto& backoff = m_backoff[key];
    if (now < backoff.last + backoff.delay)
        return false;
    const bool crash_loop = now - backoff.last < k_max_backoff;
    backoff.delay =
        crash_loop ? std::min(backoff.delay * 2, k_max_backoff) : std::chrono::milliseconds(500);
    backoff.last = now;
    return true;
}

void Engine::supervise_loop() {
    auto next_collection = std::chrono::steady_clock::now() + k_collect_interval;
    while (sleep_unless_stopping(k_supervise_interval)) {
        if (const auto now = std::chrono::steady_clock::now(); now >= next_collection) {
            next_collection = now + k_collect_interval;
            collect_after_prune(); // what a failed or interrupted prune left, pins that expired
        }
        if (auto proxy = m_proxy.ensure_running(); !proxy)
            common::log_error("cannot start deploy-proxy: " + proxy.error().message);
        if (m_routes_stale) // a publish failed: the proxy may route what the state does not say
            publish_routes_or_log("again");
        for (const auto& app : m_store->apps())
            supervise_app(app);
        reconcile_drains();
    }
}

void Engine::supervise_app(const std::string& app) {
    std::unique_lock deploy(slot(app).deploy_lock, std::try_to_lock);
    if (!deploy.owns_lock())
        return;            // a deployment or rollback is changing it
    judge_canary(app);     // deploy --canary --auto, once due
    supervise_canary(app); // its process died: aborted
    auto production = m_store->production(app);
    if (production && m_store->stopped(app))
        return; // deployctl stop: nothing is to run
    auto* runtime = production ? running_runtime(*production) : nullptr;
    std::optional<common::AppConfig> config;
    if (runtime)
        if (auto parsed = common::parse_config(production->config, "deploy.toml"))
            config = std::move(*parsed);
    const bool asleep = config && sleeping(app, *config);
    if (config && !asleep) // several web instances: one failing its check is unrouted first
        check_web_instances(*production, *config);
    if (production)
        supervise_processes(*production);
    if (!runtime || asleep || instances_of(app, "web") == 0)
        return; // nothing in production, a [static] release, web scaled to 0 or asleep
    if (production->pid > 0)
        if (auto status = runtime::reap_if_exited(production->pid))
            if (auto noted = m_store->set_last_exit(app, production->id, "exited with " + *status);
                !noted)
                common::log_error(noted.error().message);
    if (runtime->alive({production->pid, production->pid_start})) {
        if (config)
            sleep_if_idle(*production, *config);
        return;
    }
    auto reason = recover_production(*production);
    if (!reason)
        return;
    if (!reason->empty()) // the runtime knows better: "app exceeded memory limit 64m"
        if (auto noted = m_store->set_last_exit(app, production->id, *reason); !noted)
            common::log_error(noted.error().message);
    if (!restart_due(app))
        return;
    const std::string note =
        reason->empty() ? "app exited; restarted" : *reason + "; started again";
    if (auto restarted = restart_production(*production, note); !restarted)
        common::log_error("cannot restart " + app + " " + production->id + ": " +
                          restarted.error().message);
}

} // namespace agent
