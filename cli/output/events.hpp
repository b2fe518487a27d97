#pragma once
// Everything deployctl tells its user, as data: one struct per kind of event, and `Event`,
// the variant the printers render (printer.hpp). A command builds one and hands it to
// `Context::out->emit(...)`; human.cpp and json.cpp say how each kind looks.
//
// Adding a kind: its struct here and in `Event`, then one overload in human.cpp and in
// json.cpp (each printer visits every kind: a kind it lacks does not compile), docs/json.md,
// and phase_of() in grouped.cpp if it moves a host's phase.

#include <common/result.hpp>

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace cli::output {

// An agent's JSON answer, kept as it came and shared by the copies of its event (a host's
// events wait in GroupedOutput). Keeps nlohmann/json.hpp out of this header.
class JsonValue {
  public:
    // Implicit: `Releases{host, *answer}` reads best at the call sites.
    JsonValue(const nlohmann::json& value);
    JsonValue(nlohmann::json&& value);
    const nlohmann::json& operator*() const { return *m_value; }
    const nlohmann::json* operator->() const { return m_value.get(); }

  private:
    std::shared_ptr<const nlohmann::json> m_value;
};

// deployctl version; agent version: deployctl's, then one per agent.
struct Version {
    std::string version;
    std::string host = {}; // empty: deployctl's own version; else deploy-agent's on that host
};

// deployctl completion SHELL: the script, printed as it is for people.
struct Completion {
    std::string shell;
    std::string script;
};

// Something the user should know that is not an error (stderr).
struct Warning {
    std::string message;
};

// deploy: what is being deployed, before any agent is contacted.
struct PackageSummary {
    std::string app;
    std::string commit;  // full sha
    std::string message; // first line
    std::size_t files = 0;
    std::uint64_t bytes = 0;
    bool dirty = false;
};

struct UploadStats {
    std::size_t files = 0;         // manifest entries
    std::size_t blobs_total = 0;   // distinct contents
    std::size_t blobs_missing = 0; // the agent lacked these
    std::uint64_t bytes_total = 0; // all distinct contents
    std::uint64_t bytes_missing = 0;
    std::uint64_t bytes_sent = 0; // of the missing contents (before compression)
    std::uint64_t wire_bytes = 0; // what the upload sent: requests, tree nodes, compressed blobs
    std::string tree;             // the root node's digest (common/tree.hpp); "" for an older
                                  // agent, which is sent the manifest
};

// deploy: the agent said which blobs it lacks; they upload next.
struct Uploading {
    std::string host;
    UploadStats stats;
};

// While blobs upload to `host`: `bytes_sent` of `bytes_total` so far (the missing blobs
// only). Emitted often, from the transport's progress callback; the printer throttles (a
// redrawn bar on a terminal, nothing elsewhere).
struct UploadProgress {
    std::string host;
    std::uint64_t bytes_sent = 0;
    std::uint64_t bytes_total = 0;
};

// deploy: the missing blobs are on the agent.
struct Uploaded {
    std::string host;
    UploadStats stats;
};

// deploy: the agent accepted the deployment.
struct Created {
    std::string host;
    std::string release;
    std::string state;
};

// deploy: the host's PRODUCTION release was made from the same tree and deploy.toml, so no
// release was created (deploy --force makes one anyway).
struct Unchanged {
    std::string host;
    std::string release;
    std::string commit; // the serving release's (full sha)
    bool dirty = false;
    std::string url;
};

// A `state`, `log` or `health` event from the agent (deploy, logs), as it came.
struct AgentEvent {
    std::string host;
    JsonValue event;
    bool timestamps = false; // logs -t: people see each line's "ts" too
};

struct DoneInfo {
    std::string host;
    std::string release;
    std::string state;
    std::string url;
    std::optional<std::string> error;
    std::int64_t elapsed_ms = 0;
    std::string previous;   // rollback only
    bool unchanged = false; // rollback over several hosts: `release` was live already
    // rollback: the release has a [release] command, which was not run again
    bool release_command_skipped = false;
};

// deploy: the deployment settled (PRODUCTION, FAILED, ...).
struct Done : DoneInfo {};

// rollback: `release` is live again (`previous` was).
struct RolledBack : DoneInfo {};

// rm: the agent deleted `release`.
struct Removed {
    std::string host;
    std::string release;
};

// releases: GET /v1/apps/APP/releases.
struct Releases {
    std::string host;
    JsonValue list;
};

// ps: GET /v1/apps/APP/ps (the PRODUCTION release's processes).
struct Processes {
    std::string host;
    JsonValue list;
};

// status: GET /v1/apps/APP.
struct Status {
    std::string host;
    JsonValue status;
};

// apps: GET /v1/apps (each app's PRODUCTION release, state and URL).
struct Apps {
    std::string host;
    JsonValue list;
};

// stop | start | restart: the agent's answer (app, release, state, changed, pid).
struct AppChanged {
    std::string host;
    std::string action; // "stop", "start", "restart"
    JsonValue answer;
};

// maintenance, pause, resume: the app's traffic modes after `action` ("show",
// "on", "off", "pause", "resume"): {app, maintenance, paused}.
struct TrafficChanged {
    std::string host;
    std::string action;
    JsonValue answer;
};

// canary: GET /v1/apps/APP/canary (action "show"; "set" after a new share), or the
// answer of POST .../canary/promote ("promote") or .../canary/abort ("abort").
struct Canary {
    std::string host;
    std::string action;
    JsonValue answer;
};

// destroy: the agent's answer (destroyed, releases, blobs_removed, blobs_kept).
struct AppDestroyed {
    std::string host;
    JsonValue answer;
};

// env ls: GET /v1/apps/APP/env (secret values are never in it).
struct EnvList {
    std::string host;
    JsonValue answer;
};

// cron ls: the agent's answer to GET /v1/apps/{app}/cron ({"app", "jobs": [...]}).
struct CronJobs {
    std::string host;
    JsonValue answer;
};

// build-cache ls: the agent's answer to GET /v1/apps/{app}/build-cache ({"app", "max",
// "bytes", "builds_bytes", "entries": [{"name", "kind", "bytes", "last_used", "release"}]}).
struct BuildCache {
    std::string host;
    JsonValue answer;
};

// build-cache clear: the agent's answer to DELETE …/build-cache ({"app", "removed_bytes"}).
struct BuildCacheCleared {
    std::string host;
    JsonValue answer;
};

// cron run NAME: the agent's answer ({"app", "job", "release", "log"}).
struct CronStarted {
    std::string host;
    JsonValue answer;
};

// hooks secret: the agent's answer to POST /v1/apps/{app}/hooks/secret ({"app", "secret",
// "rotated", "paths": {"github": "/v1/hooks/github/APP", ...}}).
struct HookSecret {
    std::string host;
    JsonValue answer;
};

// hooks key: POST /v1/apps/{app}/hooks/key ({"app", "public_key", "fingerprint", "created",
// "rotated", "hosts_forgotten", "hosts": [{"host", "key_type", "fingerprint", "added"}]}).
struct HookKey {
    std::string host;
    JsonValue answer;
};

// hooks ls: GET /v1/apps/{app}/hooks/deliveries ({"app", "deliveries": [...]}).
struct HookDeliveries {
    std::string host;
    JsonValue answer;
};

// previews: GET /v1/apps/{app}/previews ({"app", "previews": [...]}).
struct Previews {
    std::string host;
    JsonValue answer;
};

// certs: one agent's GET /v1/certificates.
struct Certificates {
    std::string host;
    JsonValue answer;
};

// env set | unset: the agent's answer (`set` or `unset`: the names).
struct EnvChanged {
    std::string host;
    JsonValue answer;
};

// agent ping | info: GET /v1/health (info = false) or /v1/info (info = true).
// deployctl agent ping | info | df | prune: one agent's answer.
enum class AgentQuery { ping, info, disk, prune };
struct Agent {
    std::string host;
    AgentQuery query = AgentQuery::ping;
    JsonValue answer;
};

// token create: the new token, its secret shown this once.
struct TokenCreated {
    std::string host;
    JsonValue token;
};

// token ls.
struct Tokens {
    std::string host;
    JsonValue list;
};

// token revoke.
struct TokenRevoked {
    std::string host;
    JsonValue token;
};

// login: the agent accepted the token, stored as its line in `file`.
struct LoggedIn {
    std::string host;
    std::string file;
    bool replaced = false; // the file had a line for the host before
};

// agent install | upgrade: one step on one server. `state`: "done" (it changed something),
// "unchanged" (nothing to do), "would" (--dry-run: `commands` are what it would run).
struct InstallStep {
    std::string host;
    std::string step; // connect, package, upload, install, engine, config, group, service, answer
    std::string state;
    std::string detail;
    std::vector<std::string> commands = {};
};

// agent install | upgrade: the end, the agent answering (or what --dry-run would do).
struct Installed {
    std::string host;
    std::string version;
    bool changed = false;
    bool dry_run = false;
    double seconds = 0;
    std::vector<std::string> next = {}; // the commands to run next
};

// audit: GET /v1/audit, newest first.
struct Audit {
    std::string host;
    JsonValue list;
};

// run: output of the command, as it arrived (`deployctl run` writes it straight to its own
// stdout and stderr without --json; the printers render it for --json and tests).
struct RunOutput {
    std::string host;
    std::string stream; // "stdout" or "stderr"
    std::string data;
};

// run: the command ended (its status is deployctl's exit code).
struct RunExit {
    std::string host;
    int status = 0;
    std::optional<int> signal;        // killed by this signal (status 128+N)
    std::optional<std::string> error; // it could not start (status 127 or 126)
};

// What went wrong; `host` is empty when the error is not about one agent.
struct Error {
    common::Error error;
    std::string host;
};

// One host's line of the table that ends a command run over several hosts.
struct SummaryRow {
    std::string host;
    std::string release; // deploy: the release created; rollback: the one gone back to;
                         // status/releases: the PRODUCTION one
    std::string state; // deploy: PRODUCTION, CANARY, QUEUED, FAILED, ROLLED_BACK, ROLLBACK_FAILED,
                       // KEPT, NOT_STARTED, UNREACHABLE, ERROR; rollback: PRODUCTION,
                       // FAILED, ROLLED_BACK, NOT_STARTED; status: PRODUCTION, NONE, ...
    std::string previous; // deploy, rollback: PRODUCTION before (live again when ROLLED_BACK)
    std::optional<std::int64_t> elapsed_ms;
    std::string note; // why (the error), or what happened
    // status/releases: what the PRODUCTION release is, and what differs from the first
    // reachable host's ("release": one serves nothing; "commit", "tree", "config";
    // "unknown": a release without digests, under another id).
    std::string commit = {}; // full sha
    bool dirty = false;
    std::vector<std::string> differs = {};
};

// The end of a command over several hosts (cli/fleet.hpp): a table for people, a `summary`
// event for scripts (docs/json.md, docs/multi-host.md).
struct Summary {
    std::string command;  // "deploy", "rollback", "status", "releases"
    std::string strategy; // deploy: "parallel" or "rolling"
    std::vector<SummaryRow> rows;
    bool ok = true;         // every host did what was asked
    bool consistent = true; // every host serves the same release (status: the same content)
    int exit_code = 0;
    std::int64_t elapsed_ms = 0; // deploy: the whole run
};

// deployctl init --list: one template.
struct TemplateSummary {
    std::string name;
    std::string description;
    std::vector<std::string> files; // "deploy.toml", "Dockerfile"
};

// deployctl init --list: every template.
struct Templates {
    std::vector<TemplateSummary> list;
};

// deployctl init: what was detected and why, the files written, what to do next.
struct InitSummary {
    std::string dir; // as given ("." by default)
    std::string app;
    std::string app_source; // "the folder name \"web\"", "package.json \"name\""
    std::string template_name;
    std::string stack;
    bool detected = false;             // false: --template chose
    std::vector<std::string> evidence; // why this template, file by file
    struct File {
        std::string path; // relative to dir
        bool replaced = false;
    };
    std::vector<File> files;
    std::string variant;        // written for: "container" (--engine docker) or "process"
    std::string variant_reason; // why ("--engine process", what the agents said; "" default)
    std::string engine;         // "container" (a Dockerfile), or "any" (a process, or static files)
    std::string needs; // what the agent needs to run it: the engine, or a runtime on its PATH
    std::vector<std::string> notes; // what to check before deploying
    std::vector<std::string> next;  // the commands to run next
};

using Event =
    std::variant<Version, Completion, Warning, PackageSummary, Uploading, UploadProgress, Uploaded,
                 Created, Unchanged, AgentEvent, Done, RolledBack, Removed, Releases, Processes,
                 Status, Apps, AppChanged, TrafficChanged, Canary, AppDestroyed, EnvList,
                 EnvChanged, CronJobs, CronStarted, BuildCache, BuildCacheCleared, HookSecret,
                 HookKey, HookDeliveries, Previews, Certificates, Agent, TokenCreated, Tokens,
                 TokenRevoked, Audit, LoggedIn, InstallStep, Installed, RunOutput, RunExit, Error,
                 Summary, Templates, InitSummary>;

} // namespace cli::output
