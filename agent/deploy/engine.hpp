#pragma once
// The deployment engine behind agent::Service; builds and runs releases
// through agent/runtime/runtime.hpp (processes, docker or podman).
//
// engine.cpp    queries, the per-app workers and the global build slots
// pipeline.cpp  QUEUED -> BUILDING -> PROVISIONING (materialize, build, start, health)
// activate.cpp  the switch to PRODUCTION, routing, drain, prune, rollback, remove
// history.cpp   the switch history: served spans, the default rollback target
// recover.cpp   reconcile after a restart and the supervisor thread
// lifecycle.cpp stop, start, restart and destroy of an app (deployctl apps|stop|...)
// runtimes.cpp  choosing the engine and the runtime of each release
// one_off.cpp   deployctl run: a command in a release's environment
// processes.cpp [processes] other than web: start, stop, supervise; deployctl ps
// cron.cpp      [[cron]] jobs: the scheduler thread and each run
// idle.cpp      [deploy] idle_stop: an unused app sleeps, a request wakes it
// disk.cpp      blob collection and disk usage (deployctl agent df | prune)
// drains.cpp    [logs] drain: each app's lines shipped to its syslog receiver; [logs] max_age

#include <agent/deploy/events.hpp>
#include <agent/deploy/materialize.hpp>
#include <agent/deploy/proxy_supervisor.hpp>
#include <agent/deploy/routes.hpp>
#include <agent/deploy/service.hpp>
#include <agent/proxy/stats.hpp>
#include <agent/runtime/app.hpp>
#include <agent/runtime/cgroup.hpp>
#include <agent/runtime/runtime.hpp>
#include <agent/secrets/env_vars.hpp>
#include <agent/store/blobs.hpp>
#include <agent/store/store.hpp>
#include <common/cron.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

namespace agent::logs {
class Drain;
}

namespace agent {
namespace acme {
class Manager;
}

class Engine final : public Service {
  public:
    static constexpr int k_build_slots = 2;
    static constexpr std::chrono::milliseconds k_stop_grace{10000};
    // A deploy waits at most this long for its domains' certificates ([acme]).
    static constexpr std::chrono::milliseconds k_certificate_wait{60000};
    static constexpr std::chrono::milliseconds k_build_kill_grace{2000};
    // The build cache's copy for the next build is made once no deployment of the app
    // came for this long after the last (docs/build-cache.md).
    static constexpr std::chrono::milliseconds k_copy_ahead_after{1000};
    // A drain ends early once the old release's port was idle this long, looked at every
    // k_drain_poll: reading /proc/net/tcp and tcp6 costs the kernel a walk of its whole
    // connection table (7-9 ms on a 2-core server with 24 GiB), so every 50 ms was a sixth
    // of a core for as long as a drain lasted.
    static constexpr std::chrono::milliseconds k_drain_quiet{1500};
    static constexpr std::chrono::milliseconds k_drain_poll{250};
    static constexpr std::chrono::milliseconds k_standby_poll{500};
    // Failed checks in a row that take a running web instance out of the
    // routing table (one that is down is taken out at once).
    static constexpr int k_failed_checks = 2;
    // A state.db write that failed on I/O (SQLite rolled it back) is tried
    // again, k_db_attempts in all, k_db_retry apart (docs/reliability.md).
    static constexpr int k_db_attempts = 5;
    static constexpr std::chrono::milliseconds k_db_retry{100};
    // What a failed start shows of the app's output.
    static constexpr std::size_t k_startup_lines = 20;
    static constexpr std::size_t k_startup_bytes = 256 * 1024;

    explicit Engine(ServiceOptions options);
    ~Engine() override;

    common::Status start() override;
    void stop() override;
    common::Result<ReleaseInfo> create_deployment(NewDeployment deployment) override;
    common::Result<ReleaseInfo> release(const std::string& app, const std::string& id) override;
    common::Result<AppStatus> status(const std::string& app) override;
    std::vector<AppStatus> apps() override;
    common::Result<Promotion> rollback(const std::string& app,
                                       const std::optional<std::string>& id) override;
    common::Status remove(const std::string& app, const std::string& id) override;
    common::Result<AppAction> stop_app(const std::string& app) override;
    common::Result<AppAction> start_app(const std::string& app) override;
    common::Result<AppAction> restart_app(const std::string& app) override;
    common::Result<Traffic> traffic(const std::string& app) override;
    common::Result<Traffic> set_maintenance(const std::string& app, bool on,
                                            const std::string& message,
                                            std::int64_t retry_after) override;
    common::Result<Traffic> set_paused(const std::string& app, bool on,
                                       std::int64_t timeout_ms) override;
    common::Result<Destroyed> destroy_app(const std::string& app) override;
    std::vector<secrets::VarInfo> env(const std::string& app) override;
    common::Result<std::string> hook_secret(const std::string& app, bool rotate) override;
    common::Result<std::optional<std::string>>
    existing_hook_secret(const std::string& app) override;
    common::Result<std::optional<std::string>> secret_value(const std::string& app,
                                                            const std::string& name) override;
    common::Result<bool> begin_delivery(const DeliveryRow& row) override;
    common::Status finish_delivery(const DeliveryRow& row) override;
    std::optional<DeliveryRow> delivery(const std::string& app, const std::string& provider,
                                        const std::string& id) override;
    std::vector<DeliveryRow> deliveries(const std::string& app) override;
    common::Result<std::optional<GitKeyRow>> git_key(const std::string& app, bool make,
                                                     bool rotate) override;
    common::Result<std::optional<std::string>> git_private_key(const std::string& app) override;
    std::vector<GitHostRow> git_hosts(const std::string& app) override;
    common::Status add_git_host(const std::string& app, const std::string& host,
                                const std::string& key) override;
    common::Status forget_git_hosts(const std::string& app) override;
    std::vector<PreviewRow> previews(const std::string& app) override;
    common::Status put_preview(const PreviewRow& row) override;
    common::Status remove_preview(const std::string& app, int number) override;
    common::Status set_env(const std::string& app, std::vector<secrets::NewVar> vars) override;
    common::Status unset_env(const std::string& app,
                             const std::vector<std::string>& names) override;
    common::Result<OneOff> one_off(const OneOffRequest& request) override;
    common::Result<ProcessList> processes(const std::string& app) override;
    common::Result<ProcessList> scale(const std::string& app,
                                      const std::map<std::string, int>& counts) override;
    common::Result<std::vector<CronJobInfo>> cron_jobs(const std::string& app) override;
    common::Result<CronRunStarted> run_cron(const std::string& app,
                                            const std::string& job) override;
    std::string metrics() override;
    common::Result<DiskUsage> disk_usage() override;
    common::Result<BuildCacheInfo> build_cache(const std::string& app) override;
    common::Result<std::uint64_t> clear_build_cache(const std::string& app) override;
    common::Result<Collected> collect_garbage(bool dry_run) override;
    common::Result<CanaryInfo> canary(const std::string& app) override;
    common::Result<CanaryInfo> set_canary(const std::string& app, int percent) override;
    common::Result<Promotion> promote_canary(const std::string& app) override;
    common::Result<ReleaseInfo> abort_canary(const std::string& app) override;
    std::string engine() const override { return m_engine; }
    std::string engine_version() const override;
    std::string proxy_listen() const override { return m_options.proxy.listen; }
    std::string proxy_https_listen() const override {
        return m_options.proxy.https() ? m_options.proxy.https_listen : std::string();
    }
    std::vector<acme::CertificateStatus> certificates() const override;
    bool acme_enabled() const override { return m_options.proxy.acme.enabled; }

  private:
    // A deployment on the app's queue, or (previous set) a replaced release
    // handed to start_drain.
    struct Job {
        std::string id;
        common::AppConfig config;
        common::Manifest manifest;
        bool release_command = true; // run [release] command (deploy jobs)
        bool rebuild = false;        // deploy --rebuild: never reuse an earlier build
        bool no_cache = false;       // deploy --no-cache: the build cache is not restored
        int canary = 0;              // deploy --canary PCT (0: switch)
        std::int64_t canary_auto = 0;
        int canary_max_error_bp = 100;
        // a drain: the replaced release and its process
        std::string previous;
        runtime::AppProcess previous_process;
        // After its drain the replaced web keeps running this long, unrouted
        // ([deploy] standby): a rollback to it within it is a routing switch.
        std::chrono::milliseconds standby{0};
        // The rest of a standby window kept after an agent restart (no drain to log).
        bool standby_rearmed = false;
    };
    struct AppSlot {
        std::deque<Job> queue;
        std::mutex deploy_lock; // one deployment (or rollback) at a time per app
        std::thread thread;
        // Under deploy_lock: the app's spare tree (materialize.hpp), the tree it should be
        // of (the last one written for a release), and how long the last tree written
        // file by file from the store took (what a reuse of a kept build costs).
        std::optional<SpareTree> spare;
        std::optional<common::Manifest> spare_wanted;
        std::unique_ptr<SpareWriter> spare_writer; // writing the next spare
        // The build cache's copy for the next build (BuildCache::prepare), made after a
        // deployment whose build used the cache (cache_copy: its [build] cache_max).
        std::unique_ptr<BuildCacheCopier> cache_copier;
        std::optional<std::uint64_t> cache_copy;

        std::chrono::milliseconds full_write{0};
    };
    struct Backoff {
        std::chrono::steady_clock::time_point last{};
        std::chrono::milliseconds delay{500};
    };

    // engine.cpp
    AppSlot& slot(const std::string& app);
    void enqueue(const std::string& app, Job job);
    void worker_loop(std::string app);
    void acquire_build_slot();
    void release_build_slot();
    // `served`: the release's spans from served_spans() (history.hpp), if known.
    ReleaseInfo
    to_info(const ReleaseRow& row,
            const std::map<std::string, std::vector<ServedSpan>>* served = nullptr) const;
    // With the history (`full`): each release's served spans, the rollback target and the
    // next id; else (GET /v1/apps) only what the summary needs.
    enum class Detail { summary, full };
    AppStatus make_status(const std::string& app, const std::vector<ReleaseRow>& rows,
                          Detail detail);
    std::string app_url(const std::string& app) const;
    bool stopping() const { return m_stopping.load(); }
    // Runs `write` (a state.db change returning a Status or Result) again while
    // it fails on I/O, up to k_db_attempts times; the last result.
    template <class Write> auto db_write(Write&& write) {
        auto result = write();
        for (int attempt = 1;
             !result && result.error().kind == common::ErrorKind::io && attempt < k_db_attempts;
             ++attempt) {
            std::this_thread::sleep_for(k_db_retry);
            result = write();
        }
        return result;
    }
    // Sleeps up to `duration`; false if the engine is stopping.
    bool sleep_unless_stopping(std::chrono::milliseconds duration);
    // Picks the engine (--engine auto), loads the agent id, makes the runtimes.
    common::Status open_runtimes();
    // The runtime that builds and runs this release: a container engine for a
    // release with a Dockerfile, else plain processes.
    runtime::Runtime& runtime_for(const std::string& app, const std::string& id,
                                  const common::AppConfig& config) const;
    runtime::Runtime& runtime_for(const ReleaseRow& row) const;
    // The same for a recorded release's web process; nullptr when it has none: a
    // [static] release (deploy-proxy serves its files) or a worker-only one
    // ([processes] without web). One parse of its config.
    runtime::Runtime* running_runtime(const ReleaseRow& row) const;

    // pipeline.cpp
    void run_deployment(const std::string& app, Job& job);
    // pipeline.cpp: starts writing the spare tree of the app's last written tree when its
    // worker has nothing queued (under deploy_lock, as settle_spare).
    void keep_spare(const std::string& app, AppSlot& slot);
    // Takes the spare a writer made into the slot once it is done; one not done is waited
    // for at normal priority, or cancelled when `cancel` (its half-written folder left for
    // the next write): true when it was.
    bool settle_spare(const std::string& app, AppSlot& slot, bool cancel);
    // pipeline.cpp: after a deployment whose build used the cache, with nothing queued:
    // starts the copy of the cache for the next build unless it is there (under
    // deploy_lock).
    void copy_cache_ahead(const std::string& app, AppSlot& slot);
    // The app's variables for this release, and its events redacted from now on.
    common::Result<secrets::ReleaseEnv>
    release_env(const std::string& app, const common::AppConfig& config, EventLog& events);
    // The [release] command, once the build is done (still BUILDING).
    common::Status release_phase(const std::string& app, const Job& job, const EventLog& events);
    // The links a successful process-engine build makes in its app's build cache (its
    // [build] cache paths saved, its output kept for reuse), of a snapshot of the release
    // directory taken right after the build, made on a thread while the release starts
    // (its release command, its start and health check). Destroyed: waited for.
    class BuildLinks {
      public:
        template <class Work> void start(Work&& work) {
            m_thread = std::jthread(std::forward<Work>(work));
        }
        // Done, their notes in the event log.
        void wait() {
            if (m_thread.joinable())
                m_thread.join();
        }

      private:
        std::jthread m_thread; // joined when destroyed
    };
    common::Status build(const std::string& app, const Job& job, const EventLog& events,
                         const secrets::ReleaseEnv& env, BuildLinks& links);
    // Starts the release's app on `port` with the app's variables (deployctl env).
    // `process` (with its instance and command) starts a process other than web.
    common::Result<runtime::AppProcess> start_app(runtime::Runtime& runtime, const std::string& app,
                                                  const std::string& id,
                                                  const common::AppConfig& config, int port,
                                                  const std::string& process = {},
                                                  int instance = 0);
    // PROVISIONING: launch_and_check for an app, check_static_site for a
    // [static] release (no process: an empty AppProcess).
    common::Result<runtime::AppProcess> provision(const std::string& app, const std::string& id,
                                                  const common::AppConfig& config,
                                                  const EventLog& events);
    common::Result<runtime::AppProcess> check_static_site(const std::string& app,
                                                          const std::string& id,
                                                          const common::AppConfig& config,
                                                          const EventLog& events);
    // RELEASE_DIR/static.dir, the directory deploy-proxy serves.
    std::filesystem::path static_root(const std::string& app, const std::string& id,
                                      const common::AppConfig& config) const;
    // The release's maintenance.html (at its root, else in its [static] dir):
    // a regular file, not a link; "" when it has none.
    std::string maintenance_page(const std::string& app, const std::string& id,
                                 const common::Result<common::AppConfig>& config) const;
    // Applies a change of the app's traffic row (`change` writes it) to
    // deploy-proxy; if the proxy cannot be told, the row is put back and the
    // error says nothing changed.
    common::Result<Traffic> change_traffic(const std::string& app, std::string_view what,
                                           const std::function<common::Status()>& change);
    common::Result<runtime::AppProcess> launch_and_check(const std::string& app,
                                                         const std::string& id,
                                                         const common::AppConfig& config,
                                                         const EventLog& events);
    // After a failed start: the last k_startup_lines lines the app wrote
    // since `from` (an offset in its app log), redacted, as "app" log events,
    // and the `deployctl logs ID` to see more.
    void show_startup_output(const std::string& app, const std::string& id, std::uintmax_t from,
                             const EventLog& events);
    common::Status wait_healthy(runtime::Runtime& runtime, const runtime::ReleaseRef& release,
                                const runtime::AppProcess& process, int port,
                                const common::HealthConfig& health, const EventLog& events);
    bool advance(const std::string& app, const std::string& id, common::State from,
                 common::State to, const EventLog& events);
    void fail(const std::string& app, const std::string& id, common::State from,
              const std::string& message, const EventLog& events);
    void stop_process(const std::string& app, const std::string& id,
                      const common::AppConfig& config, const runtime::AppProcess& process);

    // activate.cpp
    common::Result<std::optional<std::string>> activate(const std::string& app,
                                                        const std::string& id, common::State from,
                                                        const EventLog& events);
    // Routes the app to `id` (not yet PRODUCTION), then GETs its health path
    // ("/" for [static]) through deploy-proxy with the probe key and checks
    // that `id` answered (docs/design.md §8). On failure the routes are put
    // back and the error says why; logged to `events` either way.
    common::Status prove_live(const std::string& app, const std::string& id,
                              const EventLog& events);
    // Publishes the routing table made from the database and the candidates
    // and waits until deploy-proxy applied it (RoutePublisher, routes.hpp).
    // On failure the error names the step; the table is marked stale and the
    // supervisor publishes again until one goes through.
    common::Status publish_routes();
    // [acme]: the deploy of `id` routes its domains; each one without a
    // certificate is issued now, its outcome a line of the deploy's events.
    void settle_certificates(const std::string& app, const std::string& id, const EventLog& events);
    // After a failure a caller cannot undo: logged, the supervisor retries.
    void publish_routes_or_log(std::string_view why);
    std::vector<Route> routing_table_locked();
    // The drain (and standby) of a replaced release on a thread of its own, off
    // the app's deploy lock: the next deploy or rollback never waits for it. It
    // takes the lock only to stop what it must, after checking again that the
    // release was not promoted meanwhile.
    void start_drain(const std::string& app, Job job);
    // The drainer thread: drain, standby, stop; `generation` is its number in
    // m_drain_generation, given when it was started, `replaced_count` the app's count of
    // replaced releases (m_replaced) once it was: only the last one replaced stays in standby.
    void drain_off_lock(const std::string& app, const Job& job, std::uint64_t generation,
                        std::uint64_t replaced_count);
    void join_drainers(bool all);
    // Until nothing talked to these ports for k_drain_quiet, `drain` at most.
    void wait_drained(const std::vector<int>& ports, std::chrono::milliseconds drain);
    void prune(const std::string& app, int keep);
    // Stops it, removes its files, then its row; an error (the row kept) when
    // a file could not be removed or the row could not be deleted.
    common::Status delete_release(const ReleaseRow& row, const std::string& reason);
    common::Result<ReleaseRow> rollback_target(const std::string& app,
                                               const std::optional<std::string>& id);

    // lifecycle.cpp
    // "running", "sleeping", "stopped", "failed" or "no_release".
    std::string app_state(const std::string& app,
                          const std::optional<ReleaseRow>& production) const;
    // The app's PRODUCTION release, or not_found / refused with the fix.
    // internal while the engine is not started, not_found for an app with no release.
    common::Status known_app(const std::string& app);
    common::Result<ReleaseRow> production_of(const std::string& app, const char* verb);
    // Starts the PRODUCTION release's app on a new port, waits until it is
    // healthy, records it and routes the proxy to it; returns the process it
    // replaced (pid 0 when none ran), for the caller to drain and stop.
    // `mark_serving` false: the caller tells the runtime (Runtime::serving, an
    // engine call for a container) once it has routed the app.
    common::Result<runtime::AppProcess> start_production(const ReleaseRow& row,
                                                         const common::AppConfig& config,
                                                         const std::string& note,
                                                         bool mark_serving = true);
    // After a switch to `id`: a stopped app serves again (deploy and rollback
    // start it); says so in the release's events.
    void clear_stopped(const std::string& app, const std::string& id, const EventLog& events);
    // Writes the blob digests of a new release's manifest and of its tree's nodes
    // (DataDir::release_blobs), and stores the nodes.
    void record_blobs(const std::string& app, const std::string& id,
                      const NewDeployment& deployment);
    // Deletes `app`'s blobs that no release of another app uses.
    std::pair<int, int> remove_unshared_blobs(const std::string& app,
                                              const std::vector<ReleaseRow>& rows);
    // Adds the digests of the blobs `row` was made of; false when they cannot
    // be told (no blob list and no tree).
    bool release_digests(const ReleaseRow& row, std::set<std::string>& out) const;

    // disk.cpp: blob collection and disk usage (deployctl agent df | prune).
    // The blobs every release uses; refused while one that has not finished
    // has no blob list (its materialize still needs its blobs).
    common::Result<std::set<std::string>> blobs_in_use();
    // The agent's images that no release in the store has, and untagged
    // layers older than an hour (none on the process engine).
    std::vector<runtime::StoredImage> unused_images();
    // After a prune that deleted releases: collects, and logs what went.
    void collect_after_prune(); // also every 10 minutes (the supervisor)
    // pipeline.cpp: after a failed build, removes its tree when the disk is
    // short; returns `message` with a note saying so.
    std::string free_failed_build(const std::string& app, const std::string& id,
                                  std::string message);
    // pipeline.cpp, build reuse (docs/build-cache.md): the newest other release whose
    // build had inputs `key`; the kept builds no release has any more go.
    std::optional<std::string> built_before(const std::string& app, const std::string& id,
                                            const std::string& key);
    void drop_unused_builds(const std::string& app);
    // Held by a collection from reading the releases to removing the blobs,
    // and by create_deployment from recording a release to unpinning its blobs.
    std::mutex m_collect_mutex;

    // drains.cpp: each app whose PRODUCTION release's deploy.toml has [logs]
    // drain has its Drain (a thread); one whose drain went has it stopped
    // and its queue removed. The supervisor calls this every round.
    void reconcile_drains();
    std::string drain_metrics(); // metrics.cpp
    void stop_drains();
    std::optional<DrainStatus> drain_status(const std::string& app);
    // [logs] max_age: the log files of each app last written longer ago
    // than that (a release's event log, app log, rotated generations) go.
    std::vector<ExpiredLog> expire_logs(bool dry_run);
    std::mutex m_drains_mutex;
    std::map<std::string, std::unique_ptr<logs::Drain>> m_drains;

    // processes.cpp: the processes of a release other than web ([processes])
    // Starts each instance of the release's processes that does not run, and
    // records it; `why` goes in the release's log ("started worker.1 ...").
    // Returns the first failure (the others are started all the same).
    // `serving`: the release is PRODUCTION (or a canary's share), so each instance is told
    // it serves (Runtime::serving: the engine restarts it from now on); `none` while a release
    // without a web is checked, `all` once it is PRODUCTION (those started while it was
    // checked too).
    enum class Serving { none, started, all };
    common::Status start_processes(const std::string& app, const std::string& id,
                                   const common::AppConfig& config, const EventLog& events,
                                   Serving serving = Serving::started);
    // Stops them all at once (SIGTERM, SIGKILL after `grace`) and forgets them:
    // all the rows, those other than web, or the web instances past the first.
    enum class Which { all, others, web };
    void stop_processes(const std::string& app, const std::string& id,
                        std::chrono::milliseconds grace, Which which = Which::all);
    // deployctl scale: how many instances of `process` ("web" or a [processes]
    // name) run on this agent: the count set, else 1.
    int instances_of(const std::string& app, const std::string& process) const;
    // web.2 to web.N (deployctl scale web=N), each on its own port: starts those not
    // running, records them, and waits until each passes its health check. On
    // failure those this call started are stopped again; the first error.
    common::Status start_web_instances(const std::string& app, const std::string& id,
                                       const common::AppConfig& config, const EventLog& events);
    // Takes these web instances out of the routing table, lets their requests
    // finish (deploy.drain), then stops and forgets them.
    void retire_web_instances(const std::string& app, const std::string& id,
                              const std::vector<ProcessRow>& rows, const common::AppConfig& config);
    // deployctl restart: each web instance past the first in turn, the others serving.
    void restart_web_instances(const std::string& app, const std::string& id,
                               const common::AppConfig& config, const EventLog& events);
    // The ports of the release's web instances, web.1 (the release's own) first.
    std::vector<int> web_ports(const ReleaseRow& row);
    // The same with each instance's name ("web.1", "web.2", ...).
    std::vector<std::pair<int, std::string>> web_instances(const ReleaseRow& row);
    // PRODUCTION with several web instances: probes each (every health.interval);
    // one that is down, or fails twice in a row, leaves the routing table until
    // it passes again.
    void check_web_instances(const ReleaseRow& production, const common::AppConfig& config);
    // Makes the PRODUCTION release run the scaled counts (starts and stops
    // instances; web ones healthy before routed, drained before stopped).
    common::Status apply_scale(const ReleaseRow& row, const common::AppConfig& config,
                               const EventLog& events);
    // Where a process row's output goes: a web instance's is the release's app log.
    std::filesystem::path log_of(const ProcessRow& row) const {
        return row.process == "web"
                   ? m_options.data_dir.app_log(row.app, row.release)
                   : m_options.data_dir.process_log(row.app, row.release, row.process);
    }
    // A release with no web process: started, and each one stayed up for
    // run.health.grace.
    common::Status check_processes(const std::string& app, const std::string& id,
                                   const common::AppConfig& config, const EventLog& events);
    // PRODUCTION: restarts (with backoff) an instance that exited, starts one missing.
    void supervise_processes(const ReleaseRow& production);
    // After a restart: adopts the running processes of PRODUCTION releases,
    // stops those of any other release (or of a stopped app).
    void reconcile_processes();
    runtime::ReleaseRef process_ref(const ProcessRow& row) const {
        return {row.app, row.release, row.process, row.instance};
    }
    // cron.cpp
    void cron_loop();
    // Kills and records the runs a crashed agent left going (state.db cron_jobs.pid).
    void end_orphaned_cron_runs();
    // deployctl stop and destroy: kills the app's runs going on and waits (10 s at most)
    // until they are recorded.
    void end_cron_runs(const std::string& app);
    // Runs the jobs due at `minute` (claimed first in state.db).
    void cron_tick(common::SysMinutes minute);
    // Starts a run on its own thread; refused while the job runs. `due`: the due
    // minute, "" for a run now.
    common::Status start_cron_run(const std::string& app, const ReleaseRow& row,
                                  const common::AppConfig& config, const common::CronJob& job,
                                  const std::string& due);
    void cron_run(const std::string& app, const ReleaseRow& row, const common::AppConfig& config,
                  const common::CronJob& job, const std::string& due);
    void wait_cron_runs();

    // metrics.cpp: deploy-proxy's figures (its stats.json) as Prometheus text.
    std::string proxy_metrics();
    // metrics.cpp: a deployment ended (PRODUCTION, else FAILED) after `took`.
    void count_deployment(const std::string& app, bool production,
                          std::chrono::steady_clock::duration took);

    // canary.cpp: a healthy release becomes CANARY (instead of the switch);
    // promote and abort with the app's deploy lock held; --auto's judgement
    // (the supervisor, deploy lock held).
    void enter_canary(const std::string& app, Job& job, const runtime::AppProcess& process,
                      const EventLog& events);
    common::Result<Promotion> promote_canary_locked(const std::string& app, const std::string& why);
    common::Result<ReleaseInfo> abort_canary_locked(const std::string& app, const std::string& why);
    void judge_canary(const std::string& app);
    // A canary whose process is gone is aborted: its share goes back to PRODUCTION.
    void supervise_canary(const std::string& app);
    // activate.cpp: routes.json "canary" of the app's route (serving `serving`).
    void add_canary_side(const std::string& app, const std::string& serving, Route& route);

    // idle.cpp: [deploy] idle_stop (scale to zero, docs/traffic.md)
    // How long deploy-proxy holds a sleeping app's requests.
    static std::chrono::milliseconds wake_timeout(const common::AppConfig& config);
    // Whether the app sleeps (its web process stopped for want of requests).
    bool sleeping(const std::string& app, const common::AppConfig& config);
    // Its web process runs again (a wake-up, start, restart, deploy, rollback).
    void clear_sleeping(const std::string& app);
    // The supervisor, deploy lock held, PRODUCTION running: puts the app to
    // sleep once deploy-proxy's stats.json shows no request for idle_stop
    // (none in flight, no WebSocket open), unless it has a canary or a
    // deployctl run goes on.
    void sleep_if_idle(const ReleaseRow& production, const common::AppConfig& config);
    // Reads DATA_DIR/proxy/stats.json into m_seen_stats; the routing table
    // generation the proxy had confirmed when it wrote it (0: unreadable;
    // none from a deploy-proxy older than that field).
    std::optional<std::uint64_t> read_proxy_stats();
    std::string activity_seen(const std::string& app) const; // changes with any request
    bool app_busy(const std::string& app) const;             // in flight or a WebSocket open
    // DATA_DIR/proxy/wake.sock, bound before deploy-proxy starts (no wake-up
    // is lost); wake_loop reads the apps' names the proxy sends to it.
    common::Status open_wake_socket();
    void wake_loop();
    // Starts the sleeping app and routes it; a failure is routed as such (503
    // until the next request, after a backoff, tries again). False, doing
    // nothing, while a deploy, rollback or sleep holds the app's lock.
    bool wake_app(const std::string& app);

    // recover.cpp
    // Returns the replaced releases still running, to drain once routes are out.
    std::vector<ReleaseRow> reconcile();
    void reconcile_release(const ReleaseRow& row);
    void remove_leftover_containers();
    // Whether a release of `config` and `manifest` may be built from a Dockerfile: a container
    // engine, and [build] dockerfile or a Dockerfile at the tree's root (runtime_for tells
    // for sure once the tree is written).
    bool may_build_image(const common::AppConfig& config, const common::Manifest& manifest) const;
    // Why `config` (with `manifest`) asks for limits that the process engine
    // cannot apply here; empty when it does not.
    std::string unsupported_limits(const common::AppConfig& config,
                                   const common::Manifest& manifest) const;
    std::optional<std::string> recover_production(const ReleaseRow& row);
    void supervise_loop();
    // A crashed process (key: the app, or "APP/worker.1") may be started again now:
    // its backoff (500 ms, doubling while it keeps crashing, up to k_max_backoff) is over.
    bool restart_due(const std::string& key);
    void supervise_app(const std::string& app);
    common::Status restart_production(const ReleaseRow& row, const std::string& note);

    ServiceOptions m_options;
    std::string m_engine; // resolved by open_runtimes()
    std::string m_agent_id;
    // The process engine's limits; opened with the runtimes.
    std::shared_ptr<const runtime::cgroup::Cgroups> m_cgroups =
        std::make_shared<runtime::cgroup::Cgroups>();
    std::unique_ptr<runtime::Runtime> m_process_runtime;
    std::unique_ptr<runtime::Runtime> m_container_runtime; // null on --engine process
    std::unique_ptr<Store> m_store;
    std::unique_ptr<secrets::EnvVars> m_env; // opened with m_store
    std::shared_ptr<BlobStore> m_blob_store; // shared with the API (its pins)
    BlobStore& m_blobs;
    ProxySupervisor m_proxy;
    // [acme]: the certificates of the routed domains (null when it is off).
    std::unique_ptr<acme::Manager> m_certificates;

    // deployctl run: the runs going on per app. Shared with each run's slot,
    // which may outlive the engine.
    struct RunCounts {
        std::mutex mutex;
        std::map<std::string, int> running;
    };
    std::shared_ptr<RunCounts> m_runs = std::make_shared<RunCounts>();
    std::mutex m_mutex; // guards m_slots, m_busy, m_backoff, m_probed
    std::condition_variable m_cv;
    std::map<std::string, std::unique_ptr<AppSlot>> m_slots;
    std::set<std::string> m_busy; // "app/id" of releases being rolled back to
    std::map<std::string, Backoff> m_backoff;
    std::atomic<bool> m_stopping{false};
    std::atomic<bool> m_started{false};

    std::mutex m_build_mutex;
    std::condition_variable m_build_cv;
    int m_free_builds = k_build_slots;

    std::mutex m_routes_mutex; // guards m_publisher, m_candidates; held by publish_routes
    RoutePublisher m_publisher;
    std::map<std::string, std::string> m_candidates; // app → release being proven live
    std::atomic<bool> m_routes_stale{false};         // the last publish did not go through
    // Web instances out of the routing table, by "APP/ID/PORT": failing their
    // check (consecutive failures; routed again once one passes), or leaving
    // (scaled down, being restarted). An app whose every instance fails its
    // check keeps them all routed (deploy-proxy tries each in turn).
    std::map<std::string, int> m_failing;
    static std::string web_key(const std::string& app, const std::string& id, int port) {
        return app + "/" + id + "/" + std::to_string(port);
    }
    std::set<std::string> m_leaving;
    std::map<std::string, std::chrono::steady_clock::time_point> m_probed; // app → last probe

    // GET /metrics: deployments ended since the agent started, per app.
    struct DeployFigures {
        struct App {
            std::uint64_t production = 0, failed = 0;
            std::array<std::uint64_t, 9> buckets{}; // metrics.cpp's k_duration_buckets
            double seconds = 0;
        };
        std::mutex mutex;
        std::map<std::string, App> apps;
    } m_figures;

    // GET /metrics: deploy-proxy's counters, the current run's and the sum of
    // the runs before (kept in DATA_DIR/proxy/stats.base.json).
    struct ProxyFigures {
        std::mutex mutex;
        bool loaded = false;
        std::string instance;
        std::map<std::string, proxy::AppStats> last, base;
    } m_proxy_figures;

    std::mutex m_delete_mutex;
    std::thread m_supervisor;

    // activate.cpp: the drainers of replaced releases (start_drain), joined
    // once done (at the next start_drain) or at stop().
    struct Drainer {
        std::thread thread;
        std::shared_ptr<std::atomic<bool>> done;
    };
    // engine.cpp and pipeline.cpp: how many times each app's variables changed
    // (deployctl env set/unset) since the agent started, and that count when
    // each release's web last started ("app/id"): a warm rollback only to a
    // process that has the app's environment as it is now (m_mutex).
    std::map<std::string, std::uint64_t> m_env_changes;
    std::map<std::string, std::uint64_t> m_env_at_start;
    // What the app's variables are (their names and when each was last set): kept with a
    // release when its web starts (DataDir::release_env_at_start), so that after an agent
    // restart a standby release is warm only if they are the same.
    std::string env_fingerprint(const std::string& app);
    // A replaced release still running after an agent restart, whose standby window
    // (DataDir::release_standby) is not over: kept for the rest of it. False otherwise.
    bool rearm_standby(const ReleaseRow& row, Job& job);

    std::mutex m_drainers_mutex;
    std::list<Drainer> m_drainers;
    // "app/id" -> the number of its latest drainer: an older one gives up.
    std::map<std::string, std::uint64_t> m_drain_generation;
    std::uint64_t m_drain_count = 0;
    // app -> how many releases a switch replaced since the agent started (a standby kept
    // across a restart counts none): a release in standby leaves it once another is replaced.
    std::map<std::string, std::uint64_t> m_replaced;

    // idle.cpp. When each app's traffic was last seen changing (m_mutex).
    struct Activity {
        std::string seen; // deploy-proxy's run and the app's request count
        std::chrono::steady_clock::time_point since;
    };
    std::map<std::string, Activity> m_activity;
    // stats.json as the supervisor last read it (its thread only).
    struct SeenStats {
        std::chrono::steady_clock::time_point read{};
        std::string instance;
        std::map<std::string, proxy::AppStats> apps;
    } m_seen_stats;
    // Why the app's last wake-up failed, routed to deploy-proxy (m_routes_mutex).
    std::map<std::string, std::string> m_wake_errors;
    int m_wake_fd = -1;
    std::thread m_waker;

    std::thread m_cron;
    std::mutex m_cron_mutex; // guards m_cron_running
    std::condition_variable m_cron_cv;
    std::set<std::string> m_cron_running; // "app/job" of the runs going on
};

} // namespace agent
