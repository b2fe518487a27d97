#pragma once
// The seam between the HTTP API (agent/api) and the deployment engine
// (agent/deploy, agent/store, agent/runtime). The API validates and parses
// requests, then calls a Service; it never touches the database or processes.

#include <agent/acme/settings.hpp>
#include <agent/deploy/build_cache.hpp>
#include <agent/paths.hpp>
#include <agent/proxy/tls_certificates.hpp>
#include <agent/runtime/ports.hpp>
#include <agent/runtime/runtime.hpp>
#include <agent/secrets/vars.hpp>
#include <agent/store/blobs.hpp>
#include <agent/store/disk.hpp>
#include <agent/store/store.hpp>
#include <common/config.hpp>
#include <common/manifest.hpp>
#include <common/result.hpp>
#include <common/state.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace agent {

// A time a release served (was PRODUCTION): from its switch in, until the next switch
// ("" while it still serves). RFC 3339 UTC.
struct ServedSpan {
    std::string from;
    std::string until;
};

struct ReleaseInfo {
    std::string id; // "v3"
    std::string app;
    common::State state = common::State::queued;
    std::string created_at; // RFC 3339 UTC
    std::string updated_at;
    std::string commit;
    std::string message;
    std::string error;              // empty unless FAILED (or a note, e.g. a restart)
    int port = 0;                   // the app's port on 127.0.0.1 while it runs
    bool dirty = false;             // deployed from a working tree with uncommitted changes
    std::string tree_digest;        // of the source tree (common::Manifest::digest)
    std::string config_digest;      // sha256 of the deploy.toml text
    std::vector<ServedSpan> served; // oldest first; empty if it never served
};

struct NewDeployment {
    std::string app;
    std::string config_text; // deploy.toml as sent, kept with the release
    common::AppConfig config;
    common::Manifest manifest; // already passed validate_manifest()
    // manifest.digest() and manifest.blob_digests() when the API has them already (a tree
    // of 20,000 files costs some milliseconds each); empty and null: computed here.
    std::string tree_digest;
    std::shared_ptr<const std::vector<std::string>> blob_digests;
    // When the deployment named a tree (POST /v1/trees/missing sent its nodes): the digest of
    // each of its nodes, and the bytes of those the store has not yet. They are stored with
    // the release as they are; without them the agent builds the nodes from the manifest.
    std::vector<std::string> tree_nodes;
    std::map<std::string, std::string> unstored_nodes;
    std::string commit;
    std::string message;
    bool dirty = false;
    // The id the client asks for ("v16"; a fleet deploy, docs/design.md §8); "" = the
    // app's next. ErrorKind::refused when it is below the app's next id.
    std::string release;
    // Make a release even when PRODUCTION was made from the same tree and deploy.toml
    // (the API answers such a request with that release otherwise).
    bool force = false;
    // Run deploy.toml's [release] command. A fleet deploy runs it on the target's
    // first host only and sends false to the others (docs/multi-host.md).
    bool release_command = true;
    // deploy --rebuild: build even when an earlier build on this agent had the same
    // inputs (otherwise its output is reused). deploy --no-cache: build without
    // restoring the app's build cache (a successful build still saves it).
    bool rebuild = false;
    bool no_cache = false;
    // Run deploy.toml's [[cron]] jobs on this host while the release is PRODUCTION. A
    // fleet deploy sends false to every host but the target's first (docs/cron.md).
    bool cron = true;
    // deployctl deploy --canary PCT: once healthy the release becomes CANARY and
    // takes PCT% of the traffic (0: a plain deploy, the switch). With
    // --auto, promoted after `canary_auto` seconds unless its 5xx rate is above
    // PRODUCTION's by more than `canary_max_error_bp` hundredths of a point.
    int canary = 0;
    std::int64_t canary_auto = 0;
    int canary_max_error_bp = 100;
};

// One side of a canary split, from deploy-proxy's figures since it started
// counting the release: requests answered, those answered 5xx, and the 95th
// percentile of their durations (milliseconds, from the histogram).
struct CanarySide {
    std::string release;
    std::uint64_t requests = 0;
    std::uint64_t errors = 0;
    double p95_ms = 0;
};

// GET /v1/apps/{app}/canary: the app's CANARY release and its share.
struct CanaryInfo {
    std::string app;
    std::string release;    // the CANARY release
    std::string production; // the PRODUCTION one ("" if none)
    int percent = 0;
    std::int64_t auto_at = 0; // unix seconds; 0: no --auto
    int max_error_bp = 100;
    CanarySide canary_side{};
    CanarySide production_side{};
};

// GET /v1/apps/{app}/cron: one [[cron]] job of the PRODUCTION release.
struct CronJobInfo {
    std::string name;
    std::string schedule;
    std::string timezone;
    std::string command;
    std::string next_run; // RFC 3339 UTC; "" when this host does not run it
    // Why this host does not run it ("" when it does): stopped app, other host.
    std::string inactive;
    bool running = false;
    // The last run ("" started: none yet).
    std::string last_started;
    std::string last_finished;
    std::int64_t last_exit = 0;
    std::int64_t last_duration_ms = 0;
    std::string last_outcome; // ok, failed, timed_out, skipped
    std::string last_release;
};

// POST /v1/apps/{app}/cron/{name}/runs: the run started.
struct CronRunStarted {
    std::string job;
    std::string release;
    std::string log; // the file its output goes to
};

// [logs] drain of an app (agent/logs/drain.hpp): where, and how it goes.
struct DrainStatus {
    std::string url;
    bool connected = false;
    std::uint64_t queued_bytes = 0; // waiting to be delivered
    std::uint64_t delivered = 0;    // messages
    std::uint64_t dropped = 0;      // lines that came while the queue was full
    std::string last_error;
};

struct AppStatus {
    std::string app;
    std::optional<std::string> production; // release id
    // "running", "sleeping" ([deploy] idle_stop), "stopped" (deployctl stop), "failed" (the
    // PRODUCTION app is not running: the agent is starting it again) or "no_release".
    std::string state = "no_release";
    std::string commit; // of the PRODUCTION release
    // What `rollback` with no id goes back to: the release that served before the
    // current one, from the switch history (nullopt when there is none).
    std::optional<std::string> previous;
    std::string next_release; // the app's next free id ("v16")
    std::string url;          // http://APP.localhost:PROXYPORT/
    std::vector<std::string> domains;
    std::vector<ReleaseInfo> releases; // newest first
    std::optional<DrainStatus> drain;  // with [logs] drain
};

// What a rollback did: the release now PRODUCTION and the one it replaced.
struct Promotion {
    ReleaseInfo release;
    std::optional<std::string> previous;
    // The release's deploy.toml has a [release] command, which a rollback does
    // not run again ("" if none).
    std::string release_command;
};

// What stop, start or restart did to an app: `release` is its PRODUCTION
// release; `changed` is false when it already was as asked (stop of a stopped
// app, start of a running one).
// deployctl pause without --timeout: how long a request is held at most.
inline constexpr std::int64_t k_default_pause_timeout_ms = 30000;

struct AppAction {
    std::string app;
    std::string release;
    std::string state; // AppStatus::state afterwards
    bool changed = true;
    int pid = 0; // the app's process (its container's init) after start/restart
};

// One instance of a process of an app's PRODUCTION release (deployctl ps).
// The most instances of one process on one agent (deploy-proxy balances over
// at most 64 upstreams per route).
inline constexpr int k_max_instances = 64;

struct ProcessInfo {
    std::string process; // "web", "worker", ...
    int instance = 1;
    std::string state;     // "running", "starting" (restarting), "stopped", "crashed"
    int pid = 0;           // the process (a container's init); 0 when none runs
    std::string container; // docker/podman: its name
    std::string started_at;
    std::int64_t uptime_s = 0;
    int restarts = 0;
    std::string last_exit;       // why it last stopped ("exited with status 1")
    std::uint64_t rss_bytes = 0; // of its process group (session)
    double cpu_percent = 0;      // of one core, over a short sample
};

struct ProcessList {
    std::string app;
    std::string release; // the PRODUCTION release
    std::string engine;  // "process", "docker", "podman"
    bool stopped = false;
    // Instances per process on this agent (deployctl scale; 1 unless set),
    // for web and each process of the release.
    std::map<std::string, int> scale{};
    std::vector<ProcessInfo> processes;
};

// What destroy removed.
struct Destroyed {
    std::string app;
    std::vector<std::string> releases;
    int blobs_removed = 0;
    int blobs_kept = 0; // the app's blobs another app's release still uses
};

// deployctl run: a command in a release's environment (docs/run.md).
struct OneOffRequest {
    std::string app;
    std::string release; // "" = the PRODUCTION release
    std::vector<std::string> argv;
    bool tty = false;
    bool stdin_open = false;
    std::string term;
};

// What one_off() prepared: the command's plan, and one of the app's run
// slots, held until `slot` is dropped.
struct OneOff {
    std::string release;
    std::string engine; // "process", "docker", "podman"
    runtime::OneOffPlan plan;
    std::shared_ptr<void> slot;
};

// How deploy-proxy serves the apps.
inline constexpr unsigned k_max_proxy_threads = 1024;

struct ProxySettings {
    std::string listen = "127.0.0.1:8080"; // plain HTTP
    // HTTPS, on when `certificates` is not empty (the first is the default
    // for clients that ask for a name none covers).
    std::string https_listen = "127.0.0.1:8443";
    std::vector<proxy::CertificateFiles> certificates;
    bool redirect_https = false; // plain HTTP to a covered host: 308 to https
    // Each app's access log (DATA_DIR/apps/APP/logs/access.ndjson), rotated
    // to access.ndjson.1 past access_log_max_size bytes (0: never).
    bool access_log = true;
    std::uint64_t access_log_max_size = 64ull * 1024 * 1024;
    // deploy-proxy's workers (--threads), each with its own event loop; 0: one
    // per CPU the agent may use (runtime/cpus.hpp), resolved by serve, at most
    // k_max_proxy_threads (deploy-proxy's own limit).
    unsigned threads = 0;
    // [acme]: certificates from an ACME server, served from DATA_DIR/acme.
    acme::Settings acme{};
    // Whether deploy-proxy serves HTTPS (certificates given, or ACME on).
    bool https() const { return !certificates.empty() || acme.enabled; }
};

struct ServiceOptions {
    DataDir data_dir;
    std::string engine = "process"; // auto | docker | podman | process
    ProxySettings proxy;
    std::string proxy_bin;                  // path of the deploy-proxy binary
    std::string engine_bin;                 // the docker/podman CLI; default: on PATH
    std::string container_network = "host"; // docker run --network
    int max_runs_per_app = 4;               // deployctl run: at once per app
    // Where the cgroup hierarchies are mounted (cgroup v2, or v1's memory/,
    // cpu/ and pids/ folders): the process engine's limits (docs/design.md §2).
    std::string cgroup_root = "/sys/fs/cgroup";
    // The blob store the API uploads into (its pins are shared with the
    // collection); null: the engine opens DATA_DIR/blobs itself.
    std::shared_ptr<BlobStore> blobs{};
    // --min-free: builds are refused up front when the data dir's disk is short.
    DiskGuard disk{};
    // The ports apps are given ($PORT), apart from the kernel's ephemeral range.
    runtime::PortRange app_ports{};
};

// deployctl agent df: what the agent's data takes, per app and in all.
struct AppDiskUsage {
    std::string app;
    std::uint64_t releases = 0;    // release trees (builds included)
    std::uint64_t blobs = 0;       // blobs its kept releases use (shared ones count for each app)
    std::uint64_t logs = 0;        // event, app, process, cron and access logs
    std::uint64_t images = 0;      // its images in the container engine (its own disk)
    std::uint64_t build_cache = 0; // its build cache (docs/build-cache.md)
};
// An app's build cache: its entries and [build] cache_max of its PRODUCTION release.
struct BuildCacheInfo {
    std::string app;
    std::uint64_t max = 0;
    std::vector<BuildCacheEntry> entries;
};
struct DiskUsage {
    std::string data_dir;
    DiskSpace filesystem;
    std::uint64_t reserve = 0;      // kept free (--min-free)
    std::uint64_t file_reserve = 0; // inodes kept free (the same share)
    std::uint64_t blobs = 0;        // all stored blobs
    std::uint64_t blob_count = 0;
    std::uint64_t unused_blobs = 0;  // what `agent prune` would remove of them
    std::uint64_t total = 0;         // the whole data dir
    std::uint64_t images = 0;        // the agent's images in the container engine
    std::uint64_t unused_images = 0; // what `agent prune` would remove of them
    std::vector<AppDiskUsage> apps;
};
// deployctl agent prune: what a collection removed (or would remove).
// A log file [logs] max_age removed (or would remove).
struct ExpiredLog {
    std::string app;
    std::string file; // its name in apps/APP/logs
    std::uint64_t bytes = 0;
};
struct Collected {
    bool dry_run = false;
    std::vector<BlobStore::Stored> blobs;
    std::uint64_t bytes = 0; // of the blobs
    std::vector<ExpiredLog> logs;
    std::vector<runtime::StoredImage> images; // no kept release's, or layers of old builds
};

class Service {
  public:
    virtual ~Service() = default;

    // Recovers state after a restart (re-adopts running apps, fails interrupted
    // builds), makes sure deploy-proxy runs with the current routes, starts the
    // workers and the supervisor.
    virtual common::Status start() = 0;
    // Stops workers; running apps and the proxy keep running.
    virtual void stop() = 0;

    // Records a QUEUED release and schedules it; returns at once.
    // The API has validated the manifest and checked that every blob is present.
    virtual common::Result<ReleaseInfo> create_deployment(NewDeployment deployment) = 0;
    virtual common::Result<ReleaseInfo> release(const std::string& app, const std::string& id) = 0;
    virtual common::Result<AppStatus> status(const std::string& app) = 0;
    virtual std::vector<AppStatus> apps() = 0;
    // Promotes an INACTIVE release (default: AppStatus::previous, the one that served
    // before the current one) after starting it and passing its health check. Blocks
    // until done.
    virtual common::Result<Promotion> rollback(const std::string& app,
                                               const std::optional<std::string>& id) = 0;
    // ErrorKind::refused for PRODUCTION or unsettled releases.
    virtual common::Status remove(const std::string& app, const std::string& id) = 0;

    // deployctl stop | start | restart (docs/api.md): the PRODUCTION release's
    // processes (or container). A stopped app stays stopped across agent
    // restarts and deploy-proxy answers 503 for it; a deploy or rollback starts
    // it again. restart starts a new process, health-checks it, switches the
    // proxy to it, then drains and stops the old one. ErrorKind::not_found for
    // an unknown app, refused for an app with nothing in PRODUCTION.
    virtual common::Result<AppAction> stop_app(const std::string& app) {
        (void)app;
        return common::make_error(common::ErrorKind::internal, "stop is not supported");
    }
    virtual common::Result<AppAction> start_app(const std::string& app) {
        (void)app;
        return common::make_error(common::ErrorKind::internal, "start is not supported");
    }
    virtual common::Result<AppAction> restart_app(const std::string& app) {
        (void)app;
        return common::make_error(common::ErrorKind::internal, "restart is not supported");
    }
    // deployctl maintenance / pause / resume (docs/api.md): how deploy-proxy
    // treats the app's requests (agent/store: Traffic), kept across deploys,
    // rollbacks and restarts until turned off. The setters return once the
    // proxy applied it; ErrorKind::not_found for an unknown app.
    virtual common::Result<Traffic> traffic(const std::string& app) {
        return common::make_error(common::ErrorKind::internal, "traffic is not supported: " + app);
    }
    virtual common::Result<Traffic> set_maintenance(const std::string& app, bool on,
                                                    const std::string& message,
                                                    std::int64_t retry_after) {
        (void)on, (void)message, (void)retry_after;
        return common::make_error(common::ErrorKind::internal,
                                  "maintenance is not supported: " + app);
    }
    virtual common::Result<Traffic> set_paused(const std::string& app, bool on,
                                               std::int64_t timeout_ms) {
        (void)on, (void)timeout_ms;
        return common::make_error(common::ErrorKind::internal, "pause is not supported: " + app);
    }
    // deployctl destroy: removes everything of the app (processes, containers,
    // images, releases, logs, variables, routes, its switch history, the blobs
    // no other app uses). ErrorKind::refused while one of its releases is being
    // deployed or rolled back to.
    virtual common::Result<Destroyed> destroy_app(const std::string& app) {
        (void)app;
        return common::make_error(common::ErrorKind::internal, "destroy is not supported");
    }

    // Canary releases (deployctl canary): the app's canary (not_found when it
    // has none), its share set (1..100), promoted to PRODUCTION through the
    // switch and drain, or aborted (stopped, FAILED "canary aborted").
    virtual common::Result<CanaryInfo> canary(const std::string& app) {
        return common::make_error(common::ErrorKind::internal, "canary is not supported: " + app);
    }
    virtual common::Result<CanaryInfo> set_canary(const std::string& app, int percent) {
        (void)percent;
        return common::make_error(common::ErrorKind::internal, "canary is not supported: " + app);
    }
    virtual common::Result<Promotion> promote_canary(const std::string& app) {
        return common::make_error(common::ErrorKind::internal, "canary is not supported: " + app);
    }
    virtual common::Result<ReleaseInfo> abort_canary(const std::string& app) {
        return common::make_error(common::ErrorKind::internal, "canary is not supported: " + app);
    }

    // The app's variables (deployctl env): listed without secret values; set
    // all or nothing (ErrorKind::usage for a bad name or value); unset
    // (ErrorKind::not_found if one is not set). An app needs no release yet.
    virtual std::vector<secrets::VarInfo> env(const std::string& app) {
        (void)app;
        return {};
    }
    virtual common::Status set_env(const std::string& app, std::vector<secrets::NewVar> vars) {
        (void)app, (void)vars;
        return common::make_error(common::ErrorKind::internal, "variables are not supported");
    }
    virtual common::Status unset_env(const std::string& app,
                                     const std::vector<std::string>& names) {
        (void)app, (void)names;
        return common::make_error(common::ErrorKind::internal, "variables are not supported");
    }

    // Webhooks (docs/git.md): the app's secret, made on first use (or anew with `rotate`);
    // read without making one (nullopt: none); the deliveries received, newest first.
    // begin_delivery records a delivery and returns true, or false for an id seen before
    // (nothing changes); finish_delivery records its commit, release and result.
    virtual common::Result<std::string> hook_secret(const std::string& app, bool rotate) {
        (void)app, (void)rotate;
        return common::make_error(common::ErrorKind::internal, "webhooks are not supported");
    }
    virtual common::Result<std::optional<std::string>>
    existing_hook_secret(const std::string& app) {
        (void)app;
        return common::make_error(common::ErrorKind::internal, "webhooks are not supported");
    }
    // The value of the app's secret `name`, for a webhook's fetch ([git] token).
    virtual common::Result<std::optional<std::string>> secret_value(const std::string& app,
                                                                    const std::string& name) {
        (void)app, (void)name;
        return common::make_error(common::ErrorKind::internal, "secrets are not supported");
    }
    virtual common::Result<bool> begin_delivery(const DeliveryRow& row) {
        (void)row;
        return common::make_error(common::ErrorKind::internal, "webhooks are not supported");
    }
    virtual common::Status finish_delivery(const DeliveryRow& row) {
        (void)row;
        return common::make_error(common::ErrorKind::internal, "webhooks are not supported");
    }
    virtual std::optional<DeliveryRow> delivery(const std::string& app, const std::string& provider,
                                                const std::string& id) {
        (void)app, (void)provider, (void)id;
        return std::nullopt;
    }
    virtual std::vector<DeliveryRow> deliveries(const std::string& app) {
        (void)app;
        return {};
    }
    // Fetching over ssh (docs/git.md): the app's deploy key (made when `make` and it has
    // none, or anew with `rotate`), its private half for a fetch, the host keys its fetches
    // met (the first key of a host is kept), forgotten.
    virtual common::Result<std::optional<GitKeyRow>> git_key(const std::string& app, bool make,
                                                             bool rotate) {
        (void)app, (void)make, (void)rotate;
        return common::make_error(common::ErrorKind::internal, "deploy keys are not supported");
    }
    virtual common::Result<std::optional<std::string>> git_private_key(const std::string& app) {
        (void)app;
        return common::make_error(common::ErrorKind::internal, "deploy keys are not supported");
    }
    virtual std::vector<GitHostRow> git_hosts(const std::string& app) {
        (void)app;
        return {};
    }
    virtual common::Status add_git_host(const std::string& app, const std::string& host,
                                        const std::string& key) {
        (void)app, (void)host, (void)key;
        return common::make_error(common::ErrorKind::internal, "deploy keys are not supported");
    }
    virtual common::Status forget_git_hosts(const std::string& app) {
        (void)app;
        return common::make_error(common::ErrorKind::internal, "deploy keys are not supported");
    }
    // Preview environments of the app (oldest first), recorded or updated, forgotten (a
    // destroy of either app forgets them too).
    virtual std::vector<PreviewRow> previews(const std::string& app) {
        (void)app;
        return {};
    }
    virtual common::Status put_preview(const PreviewRow& row) {
        (void)row;
        return common::make_error(common::ErrorKind::internal, "previews are not supported");
    }
    virtual common::Status remove_preview(const std::string& app, int number) {
        (void)app, (void)number;
        return common::make_error(common::ErrorKind::internal, "previews are not supported");
    }

    // deployctl ps: each process and instance of the app's PRODUCTION release.
    // ErrorKind::not_found for an unknown app or one with no PRODUCTION release.
    virtual common::Result<ProcessList> processes(const std::string& app) {
        (void)app;
        return common::make_error(common::ErrorKind::internal, "ps is not supported");
    }

    // deployctl scale: sets the instance counts of some processes ("web" or a
    // [processes] name of the PRODUCTION release, 0..k_max_instances), kept
    // for later releases, and applies them to the PRODUCTION release unless
    // the app is stopped; then what processes() lists. bad_request for an
    // unknown process, refused for a [static] site.
    virtual common::Result<ProcessList> scale(const std::string& app,
                                              const std::map<std::string, int>& counts) {
        (void)counts;
        return common::make_error(common::ErrorKind::internal, "scale is not supported: " + app);
    }

    // Prepares a one-off command of a PRODUCTION or INACTIVE release.
    // ErrorKind::not_found for an unknown app or release or an app with no
    // PRODUCTION release, bad_request for a release in another state, refused
    // when max_runs_per_app runs of the app are going on.
    virtual common::Result<OneOff> one_off(const OneOffRequest& request) {
        (void)request;
        return common::make_error(common::ErrorKind::internal, "run is not supported");
    }
    // The engine in use ("docker", "podman", "process"; "auto" is resolved by
    // start()) and, for container engines, its version.
    // [[cron]] jobs of the app's PRODUCTION release (docs/cron.md); not_found for an
    // unknown app.
    virtual common::Result<std::vector<CronJobInfo>> cron_jobs(const std::string& app) {
        return common::make_error(common::ErrorKind::internal, "cron is not supported: " + app);
    }
    // Runs a job now; refused (409) while it runs.
    virtual common::Result<CronRunStarted> run_cron(const std::string& app,
                                                    const std::string& job) {
        return common::make_error(common::ErrorKind::internal,
                                  "cron is not supported: " + app + " " + job);
    }
    // GET /metrics: the engine's figures in the Prometheus text format
    // (docs/metrics.md); empty when it has none.
    virtual std::string metrics() { return {}; }
    // deployctl build-cache ls | clear (docs/build-cache.md). Clearing is refused
    // (ErrorKind::refused) while a build of the app uses the cache.
    virtual common::Result<BuildCacheInfo> build_cache(const std::string& app) {
        return common::make_error(common::ErrorKind::not_found, "no build cache for " + app);
    }
    virtual common::Result<std::uint64_t> clear_build_cache(const std::string& app) {
        return common::make_error(common::ErrorKind::not_found, "no build cache for " + app);
    }
    virtual common::Result<DiskUsage> disk_usage() {
        return common::make_error(common::ErrorKind::internal, "not supported");
    }
    // Removes the blobs no kept release uses and no deploy in progress pinned.
    virtual common::Result<Collected> collect_garbage(bool /*dry_run*/) {
        return common::make_error(common::ErrorKind::internal, "not supported");
    }
    virtual std::string engine() const = 0;
    virtual std::string engine_version() const = 0;
    virtual std::string proxy_listen() const = 0;
    // Where deploy-proxy serves HTTPS; empty when it has no certificates.
    virtual std::string proxy_https_listen() const = 0;
    // GET /v1/certificates: every name [acme] manages (empty when it is off).
    virtual std::vector<acme::CertificateStatus> certificates() const { return {}; }
    virtual bool acme_enabled() const { return false; }
};

std::unique_ptr<Service> make_service(ServiceOptions options);

} // namespace agent
