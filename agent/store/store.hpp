#pragma once
// The agent's state database (DATA_DIR/state.db, SQLite in WAL mode).
//
// Every state change is one transaction: a compare-and-set on the current
// state (checked against common::can_transition) plus one audit row. The
// schema (schema.hpp) itself enforces one PRODUCTION release per app (partial
// unique index).

#include <common/result.hpp>
#include <common/state.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agent {

namespace sqlite {
class Database;
class Statement;
} // namespace sqlite

struct ReleaseRow {
    std::string app;
    std::string id; // "v<seq>"
    std::int64_t seq = 0;
    common::State state = common::State::queued;
    std::string created_at;
    std::string updated_at;
    std::string commit;
    std::string message;
    std::string error;
    int port = 0;
    int pid = 0;                // app (or build) process, 0 when none
    std::int64_t pid_start = 0; // /proc/PID/stat field 22, detects pid reuse
    std::string config;         // deploy.toml text
    bool cron = true;           // runs the app's [[cron]] jobs on this host
    bool dirty = false;
    std::string tree_digest;   // common::Manifest::digest() of the source tree
    std::string config_digest; // sha256 of `config`
    std::string started_at;    // when the web process (pid) started
    int restarts = 0;          // times the agent restarted the web process
    std::string last_exit;     // why the web process last stopped running
    std::string build_key;     // digest of its build's inputs, once the build succeeded
};

// One instance of a process of a release other than web ([processes]), or of
// web past its first instance (deployctl scale web=N; the first is the release's).
struct ProcessRow {
    std::string app;
    std::string release;
    std::string process;
    int instance = 1;
    int pid = 0; // 0: not running (it is started again)
    std::int64_t pid_start = 0;
    std::string started_at;
    int restarts = 0;
    std::string last_exit; // why it last stopped running ("exited with status 1")
    int port = 0;          // a web instance's $PORT; 0 for any other process
};

struct NewRelease {
    std::string app;
    std::string config;
    std::string commit;
    std::string message;
    bool dirty = false;
    std::string tree_digest;
    std::string config_digest;
    // The id asked for (a fleet deploy gives one id on every host, docs/design.md §8):
    // its number, which must be at least the app's next one; 0 = the app's next.
    std::int64_t seq = 0;
    bool cron = true; // false: another host of the target runs the [[cron]] jobs
};

// One switch of an app's PRODUCTION release: `release` started serving at
// `ts`, replacing `previous` ("" for the app's first); `reason` is "deploy"
// or "rollback".
struct SwitchRow {
    std::string ts;
    std::string release;
    std::string previous;
    std::string reason;
};

// A release in CANARY (deployctl deploy --canary): its share of the app's
// traffic, and with --auto when it is judged (unix seconds; 0: never) and the
// 5xx rate above PRODUCTION's that aborts it (hundredths of a point).
struct CanaryRow {
    std::string app;
    std::string release;
    int percent = 0;
    std::int64_t auto_at = 0;
    int max_error_bp = 100;
};

// A webhook delivery (docs/git.md): what came, and what the agent did with it. `result`:
// "deploying" (then the release's state tells the rest), "ignored", "duplicate" (never
// stored: the first row stays), "refused" or "failed", with the reason in `detail`.
struct DeliveryRow {
    std::string app;
    std::string provider; // github, gitlab, gitea
    std::string delivery; // the provider's delivery id
    std::string received_at;
    std::string event; // push, pull_request, ping, ...
    std::string ref;
    std::string commit;
    std::string release;
    std::string result;
    std::string detail;
};

// A preview environment (docs/git.md): pull request `number` of `app`, deployed as app
// `preview_app` from `ref` (refs/pull/N/head, refs/merge-requests/N/head) at `commit`.
struct PreviewRow {
    std::string app;
    int number = 0;
    std::string preview_app;
    std::string provider;
    std::string ref;
    std::string commit;
    std::string release;
    bool closing = false; // closed, its app not yet destroyed
    std::string detail;
    std::string created_at;
    std::string updated_at;
};

// An app's deploy key (docs/git.md): its private half sealed, its public line.
struct GitKeyRow {
    std::string sealed;
    std::string public_key; // "ecdsa-sha2-nistp256 AAAA... deploy-agent@APP"
    std::string created_at;
};

// A host key an app's ssh fetch met first (trusted from then on).
struct GitHostRow {
    std::string host; // "github.com", "git.example.com:2222"
    std::string key;  // "ssh-ed25519 AAAA..."
    std::string added_at;
};

struct AuditRow {
    std::string ts;
    std::string app;
    std::string release;
    std::string from; // "" when the release was created or deleted
    std::string to;
    std::string detail;
};

// One `deployctl env set` variable of an app. `value` is the clear text of a
// plain variable, and the sealed (encrypted) text of a secret one.
struct EnvRow {
    std::string name;
    bool secret = false;
    std::string value;
    std::string updated_at;
};

// [[cron]]: per app and job, the last due minute handled and the last run
// (or skipped due time). Times are RFC 3339 UTC.
struct CronRunRow {
    std::string job;
    std::string last_due;
    std::string started;
    std::string finished;
    std::int64_t exit_status = 0;
    std::int64_t duration_ms = 0;
    std::string outcome; // "ok", "failed", "timed_out", "skipped"; "" before the first run
    std::string release;
};

struct CronProcess {
    std::string app;
    std::string job;
    int pid = 0;
    std::int64_t pid_start = 0;
};

// How deploy-proxy treats an app's requests (table traffic).
struct Traffic {
    bool maintenance = false;     // deployctl maintenance on
    std::string message;          // its --message ("" : the built-in text)
    std::int64_t retry_after = 0; // seconds; 0: no Retry-After
    std::string maintenance_since;
    bool paused = false; // deployctl pause
    std::int64_t pause_timeout_ms = 0;
    std::string paused_since;
    // [deploy] idle_stop: the web process was stopped after no request came for
    // that long; deploy-proxy holds the next request and the agent starts it.
    bool sleeping = false;
};

class Store {
  public:
    static common::Result<std::unique_ptr<Store>> open(const std::filesystem::path& path);
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // Inserts a QUEUED release with the app's next id (v1, v2, ...), or with the id
    // `release.seq` asks for: ErrorKind::refused when it is below the app's next id (taken
    // now or once, ids are never reused); the next id then follows it.
    common::Result<ReleaseRow> create(const NewRelease& release);
    // The number of the app's next release (above every id it ever had); nullopt for an
    // app this agent never had a release of.
    std::optional<std::int64_t> next_seq(const std::string& app);
    // Compare-and-set: moves `id` from `from` to `to` (ErrorKind::refused if the
    // transition is forbidden or the release is no longer in `from`).
    // `error` is stored for FAILED releases.
    common::Status transition(const std::string& app, const std::string& id, common::State from,
                              common::State to, std::string_view detail,
                              std::string_view error = {});
    // One transaction: the current PRODUCTION (if any) -> INACTIVE and `id`
    // (in state `from`, PROVISIONING or INACTIVE) -> PRODUCTION, recorded in
    // the switch history (a "rollback" when `from` is INACTIVE).
    // Returns the id of the release that was PRODUCTION before, if any.
    common::Result<std::optional<std::string>>
    switch_production(const std::string& app, const std::string& id, common::State from);
    common::Status set_process(const std::string& app, const std::string& id, int port, int pid,
                               std::int64_t pid_start);
    common::Status clear_process(const std::string& app, const std::string& id);
    // The digest of the release's build inputs, recorded once its build succeeded (or
    // reused an earlier one): a later build of the same inputs reuses its output.
    common::Status set_build_key(const std::string& app, const std::string& id,
                                 const std::string& key);
    // deployctl build-cache clear: no release's build is reused any more.
    common::Status clear_build_keys(const std::string& app);
    // The web process was started again by the agent: counts it.
    common::Status count_restart(const std::string& app, const std::string& id);
    // Why the web process stopped running ("exited with signal 9").
    common::Status set_last_exit(const std::string& app, const std::string& id,
                                 const std::string& why);

    // The processes other than web: one row per instance (inserted or replaced).
    common::Status put_process(const ProcessRow& row);
    common::Status remove_process(const std::string& app, const std::string& release,
                                  const std::string& process, int instance);
    // Of one release, by process and instance.
    std::vector<ProcessRow> processes(const std::string& app, const std::string& release);
    std::vector<ProcessRow> all_processes();
    // Deletes the row (and writes an audit row).
    common::Status remove(const std::string& app, const std::string& id, std::string_view detail);

    common::Result<ReleaseRow> get(const std::string& app, const std::string& id);
    std::optional<ReleaseRow> production(const std::string& app);
    // Newest first.
    std::vector<ReleaseRow> releases(const std::string& app);
    std::vector<ReleaseRow> all_releases();
    std::vector<std::string> apps();
    std::vector<AuditRow> audit(const std::string& app);
    // Every switch of the app's PRODUCTION release, oldest first (also of
    // releases since removed).
    std::vector<SwitchRow> switches(const std::string& app);

    // The app's variables set on the agent (deployctl env), by name.
    std::vector<EnvRow> env(const std::string& app);
    // The app's wrapped (encrypted) data key, if it has one.
    std::optional<std::string> data_key(const std::string& app);
    bool has_data_keys();
    // One transaction: stores `wrapped_key` as the app's data key when given
    // (the app has none yet), then inserts or replaces each row.
    common::Status put_env(const std::string& app, const std::vector<EnvRow>& rows,
                           const std::optional<std::string>& wrapped_key);
    // One transaction: removes the named variables; ErrorKind::not_found (and
    // nothing removed) if one of them is not set.
    common::Status remove_env(const std::string& app, const std::vector<std::string>& names);

    // Copies the app's secret rows (still sealed) as those of release `id`,
    // replacing an earlier copy; removed with the release.
    common::Status snapshot_secrets(const std::string& app, const std::string& id);
    std::vector<EnvRow> release_secrets(const std::string& app, const std::string& id);

    // deployctl stop / start: whether the app's PRODUCTION release is kept
    // stopped (apps.stopped), across agent restarts. set_stopped writes a
    // transitions row (`detail`) for the app's PRODUCTION release.
    bool stopped(const std::string& app);
    // deployctl scale: the instance counts set per process (absent: 1).
    std::map<std::string, int> scale(const std::string& app);
    // Sets these counts (others stay), audited with `detail`.
    common::Status set_scale(const std::string& app, const std::map<std::string, int>& counts,
                             std::string_view detail);
    common::Status set_stopped(const std::string& app, bool stopped, std::string_view detail);
    // deployctl maintenance / pause: the app's row of table traffic (the
    // defaults when it has none). The setters keep the other fields, stamp the
    // time a mode was turned on, and write a transitions row (`detail`) for
    // the app's PRODUCTION release; ErrorKind::not_found for an unknown app.
    Traffic traffic(const std::string& app);
    common::Status set_maintenance(const std::string& app, bool on, const std::string& message,
                                   std::int64_t retry_after, std::string_view detail);
    common::Status set_paused(const std::string& app, bool on, std::int64_t timeout_ms,
                              std::string_view detail);
    // [deploy] idle_stop put the app to sleep, or a request woke it. Not audited:
    // the agent does it by itself, and says so in the release's events.
    common::Status set_sleeping(const std::string& app, bool on);
    // deployctl destroy: one transaction removes every row of the app (releases,
    // their secrets, its variables and data key, its switches, its apps row: a
    // next deploy is v1 again) and writes one transitions row (release "",
    // `detail`); the app's earlier transitions stay as its history.
    common::Status destroy_app(const std::string& app, std::string_view detail);

    // [[cron]]: records `due` as the job's last handled due minute if it is
    // later than the one recorded; true when it was (the caller runs it),
    // false when that minute was handled already (by a run before a switch).
    common::Result<bool> claim_cron_due(const std::string& app, const std::string& job,
                                        const std::string& due);
    common::Status record_cron_run(const std::string& app, const std::string& job,
                                   const CronRunRow& run);
    std::vector<CronRunRow> cron_jobs(const std::string& app);
    // The process of a job's run going on (pid 0: none), for the agent to end
    // it after a crash; and the jobs of every app that have one recorded.
    common::Status set_cron_process(const std::string& app, const std::string& job, int pid,
                                    std::int64_t pid_start);
    std::vector<CronProcess> cron_processes();

    // Canary releases: at most one per app (inserted or replaced).
    // Webhooks: the app's sealed secret, and its deliveries. add_delivery records a new
    // one and returns true, or returns false (and changes nothing) for a delivery id seen
    // before; the oldest rows past the newest 200 of the app go.
    // (with `wrapped_key` as the app's new data key when given, in one transaction)
    common::Status put_hook_secret(const std::string& app, const std::string& sealed,
                                   const std::optional<std::string>& wrapped_key);
    std::optional<std::string> hook_secret(const std::string& app);
    common::Result<bool> add_delivery(const DeliveryRow& row);
    common::Status finish_delivery(const DeliveryRow& row); // its commit, release, result
    std::optional<DeliveryRow> delivery(const std::string& app, const std::string& provider,
                                        const std::string& delivery);
    std::vector<DeliveryRow> deliveries(const std::string& app, int limit);
    // Preview environments: put_preview inserts or updates (keeping created_at); previews
    // lists the app's, oldest first.
    common::Status put_preview(const PreviewRow& row);
    std::vector<PreviewRow> previews(const std::string& app);
    common::Status remove_preview(const std::string& app, int number);
    // Fetching over ssh: the app's deploy key (put replaces it, with `wrapped_key` as the
    // app's new data key when given), the host keys met (add_git_host keeps the first key of
    // a host), forgotten all at once.
    common::Status put_git_key(const std::string& app, const GitKeyRow& row,
                               const std::optional<std::string>& wrapped_key);
    std::optional<GitKeyRow> git_key(const std::string& app);
    std::vector<GitHostRow> git_hosts(const std::string& app);
    common::Status add_git_host(const std::string& app, const std::string& host,
                                const std::string& key);
    common::Status forget_git_hosts(const std::string& app);

    common::Status put_canary(const CanaryRow& row);
    std::optional<CanaryRow> canary(const std::string& app);
    std::vector<CanaryRow> canaries();
    common::Status remove_canary(const std::string& app);

    // Raw SQL, for maintenance and tests.
    common::Status exec(std::string_view sql);

  private:
    explicit Store(std::unique_ptr<sqlite::Database> db);
    common::Status write_audit(const std::string& app, const std::string& id, std::string_view from,
                               std::string_view to, std::string_view detail);
    // Moves the release from `from` to `to` if it is still in `from`, and writes
    // the audit row (`error`, else `detail`); the caller holds the transaction.
    common::Status cas_state(const std::string& app, const std::string& id, common::State from,
                             common::State to, std::string_view error, std::string_view detail);
    std::vector<ReleaseRow> query_releases(std::string_view where,
                                           const std::vector<std::string>& params);
    // Runs `sql` (an UPDATE of table traffic ending in "WHERE app = ?") on the
    // app's row, made first if missing; `bind` binds all but the app.
    common::Status set_traffic(const std::string& app, std::string_view sql,
                               const std::function<void(sqlite::Statement&)>& bind,
                               std::string_view detail);

    std::unique_ptr<sqlite::Database> m_db;
    std::mutex m_mutex;
};

} // namespace agent
