#pragma once
// deploy.toml: the application's deployment config (docs/design.md §6).
// Parsing lives in config.cpp so that toml++ stays out of every other file.

#include <common/result.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace common {

struct HealthConfig {
    std::string path = "/";
    std::chrono::milliseconds interval{1000};
    std::chrono::milliseconds timeout{60000};
    // A release with no web process is healthy once each of its processes
    // stayed up this long.
    std::chrono::milliseconds grace{5000};
};

struct BuildConfig {
    std::string command;    // shell command run in the release directory
    std::string dockerfile; // container engines only
    std::chrono::milliseconds timeout{5 * 60 * 1000};
    std::uint64_t memory = 0; // bytes, 0 = unlimited
    std::map<std::string, std::string> args;
    std::vector<std::string> secrets; // secrets the build may see
    // Paths of the release directory kept between builds of the process engine
    // ("node_modules"): restored before the build, saved after a successful one.
    std::vector<std::string> cache;
    std::uint64_t cache_max = 2ULL << 30; // the app's build cache, least recently used dropped
};

struct RunConfig {
    std::string command;      // process runtime: shell command; containers: image CMD if empty
    int port = 0;             // container port; the process runtime assigns $PORT itself
    std::uint64_t memory = 0; // bytes, 0 = unlimited
    double cpus = 0;          // fraction of cores (0.5 = half of one), 0 = unlimited
    std::int64_t pids = 0;    // most processes (and threads) at once, 0 = unlimited
    HealthConfig health;
};

// [release]: a command run once per deployment, after the build and before
// the new release starts (database migrations).
struct ReleaseConfig {
    std::string command; // shell command; empty = no release phase
    std::chrono::milliseconds timeout{10 * 60 * 1000};
};

// [git]: deploys that start from git itself (docs/git.md): a `git push` to the agent
// deploys the pushed commit when it is on this branch; a webhook's push event on it makes
// the agent fetch the commit from `url` and deploy it.
struct GitConfig {
    std::string branch = "main";
    // https://, http://, git://, ssh:// (or USER@HOST:PATH, with the app's deploy key) or
    // file:// ("" = webhooks cannot fetch)
    std::string url;
    // The name of a secret of the app (deployctl env set --secret) sent as the password of
    // an https:// url (plain http only to a loopback host); "" = none.
    std::string token;
};

// [preview]: preview environments per pull request (docs/git.md). Read from the serving
// release's deploy.toml (what a pull request cannot change) but for `env`, which the pull
// request's own deploy.toml gives ([preview.env]). Absent: pull requests deploy nothing.
struct PreviewConfig {
    int max = 10;       // previews of the app at once (the oldest goes past it); 0 = none
    bool forks = false; // pull requests from another repository deploy too
    std::vector<std::string> secrets;       // the app's secrets a preview gets
    std::map<std::string, std::string> env; // [preview.env]: set in previews only
};

// [[cron]]: a command the agent runs on a schedule in the PRODUCTION
// release's environment, on the target's first host (docs/cron.md).
struct CronJob {
    std::string name;     // lower-case letters, digits and dashes
    std::string schedule; // as written: 5 fields or @daily (common/cron.hpp)
    std::string command;  // shell command
    std::chrono::milliseconds timeout{60 * 60 * 1000}; // killed after this (default 1h)
    std::string timezone = "UTC";                      // IANA name
};

struct StaticConfig {
    std::string dir;
    bool spa = false;
};

// How `deployctl deploy` goes over a target's hosts (docs/multi-host.md).
enum class DeployStrategy { parallel, rolling };

struct DeploySettings {
    int keep = 5;
    std::chrono::milliseconds drain{10000};
    // Scale to zero: after no request for this long the agent stops the web
    // process and deploy-proxy holds the next request while it starts again
    // (docs/traffic.md). 0 = never.
    std::chrono::milliseconds idle_stop{0};
    bool idle_stop_workers = false; // the [processes] stop and wake with web
    DeployStrategy strategy = DeployStrategy::parallel;
    int max_parallel = 0; // hosts deployed at once in parallel mode; 0 = all of them
    // How long a replaced release's processes other than web have, after
    // SIGTERM, before SIGKILL.
    std::chrono::milliseconds stop_timeout{30000};
    // How long a replaced release's web keeps running, unrouted, after its drain: a
    // rollback within it is a routing switch (a warm rollback). 0 = stop after the drain.
    std::chrono::milliseconds standby{600000};
};

// [proxy]: how deploy-proxy carries the app's traffic (docs/deploy-toml.md).
struct AppProxySettings {
    std::uint64_t max_body = 100ull * 1024 * 1024;     // request body bytes; 0 = unlimited
    std::chrono::milliseconds connect_timeout{5000};   // to an instance, then 502
    std::chrono::milliseconds read_timeout{60000};     // waiting on the app, then 504
    std::chrono::milliseconds websocket_idle{3600000}; // an upgraded connection with no bytes
};

// "parallel" / "rolling"; nullopt for anything else.
std::optional<DeployStrategy> parse_strategy(std::string_view text);

struct TargetConfig {
    std::string name;
    std::vector<std::string> hosts;
    std::vector<std::string> domains;
    // ssh:// hosts: the command run on the server (split into words; empty =
    // `deploy-agent dial-stdio`) and the private key to log in with (empty =
    // ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa). As written: a
    // leading ~/ is expanded by the CLI.
    std::vector<std::string> agent_command;
    std::string identity_file;
    // ssh:// hosts: the agent's unix socket on the server, reached by a
    // direct-streamlocal channel before agent_command is tried. nullopt: the
    // default socket when agent_command is the default, none when it is set;
    // "": none (agent_command only). Otherwise an absolute path.
    std::optional<std::string> agent_socket;
    // https:// hosts: a PEM CA bundle to verify the agent's certificate with
    // instead of the system's (as written: the CLI resolves it against
    // deploy.toml's folder), or the pinned SHA-256 fingerprint of the agent's
    // certificate in canonical form ("sha256:AB:CD:...", common/fingerprint.hpp).
    // At most one of the two.
    std::string ca_file;
    std::string fingerprint;
};

// Where [logs] drain ships an app's lines: a syslog receiver (RFC 5424 messages,
// RFC 6587 octet-counted framing) over TCP, or TLS ("syslog+tls://").
struct DrainTarget {
    bool tls = false;
    std::string host;
    std::uint16_t port = 0; // default 514 (tcp), 6514 (tls)
    std::string ca_file;    // ?ca=PATH on the agent's host: verify with it instead of the system's
};
// "syslog+tcp://HOST[:PORT]" or "syslog+tls://HOST[:PORT][?ca=PATH]"; a usage
// error that says what is wrong otherwise.
Result<DrainTarget> parse_drain_url(std::string_view url);

// [logs]: the output log of each process (web, [processes], one per release) rotates
// past max_size into `keep` zstd-compressed files (agent/logs/rotating_file.hpp); log
// files last written more than max_age ago go; a drain ships every line to a syslog
// receiver (agent/logs/drain.hpp), holding up to drain_queue bytes while it is away.
struct LogSettings {
    std::uint64_t max_size = 10ull * 1024 * 1024; // 0: never rotated
    int keep = 5;
    std::chrono::milliseconds max_age{0}; // 0: no age limit
    std::string drain;                    // "" : none
    std::uint64_t drain_queue = 64ull * 1024 * 1024;
};

struct AppConfig {
    std::string app;
    BuildConfig build;
    RunConfig run;
    ReleaseConfig release;
    GitConfig git;
    std::optional<PreviewConfig> preview;
    std::vector<CronJob> cron;
    std::optional<StaticConfig> static_site;
    DeploySettings deploy;
    LogSettings logs;
    AppProxySettings proxy;
    std::map<std::string, std::string> env;
    std::map<std::string, TargetConfig> targets;
    // [processes] other than web, by name: each a shell command run from the
    // same release (docs/processes.md). The web process's command is
    // run.command ([processes] web is its other spelling).
    std::map<std::string, std::string> processes;
    // [processes] is given without web: a worker-only app, nothing routed.
    bool no_web = false;

    // Whether a web process runs: [run] command, [processes] web or, in a
    // container, the image's CMD; never for [static] or a worker-only app.
    bool has_web() const { return !static_site && !no_web; }
};

// The process names a release may use: lower-case letters, digits and '-',
// starting with a letter, at most 30 characters; "web" is the routed one.
bool is_valid_process_name(std::string_view name);

// Parses deploy.toml text. Errors are ErrorKind::config with
// "SOURCE:LINE:COL: message" and, for unknown keys, the closest valid key.
Result<AppConfig> parse_config(std::string_view text, std::string_view source_name);
Result<AppConfig> load_config(const std::filesystem::path& path);

// The deploy.toml of pull request `number`'s preview of `app`, from the pull request's own
// deploy.toml `text` (whose app must be `app`): app = "APP-pr-N", every domain D of its
// targets as "pr-N.APP.D", [preview.env] laid over [env], [preview] left out. ErrorKind::config
// when the text is not a deploy.toml of `app` or the names it makes are not valid.
Result<std::string> preview_config_text(std::string_view text, const std::string& app, int number);
// Whether a [git] url is fetched over ssh: "ssh://[USER@]HOST[:PORT]/PATH" or git's
// scp-like "[USER@]HOST:PATH".
bool is_ssh_git_url(std::string_view url);

// "APP-pr-N", or ErrorKind::usage when that is not a valid app name (too long).
Result<std::string> preview_app_name(const std::string& app, int number);

// A branch name git accepts (git check-ref-format --branch), without "refs/heads/".
bool is_valid_branch_name(std::string_view name);

// Lower-case letters, digits and dashes, starting with a letter, 1..63 characters.
bool is_valid_app_name(std::string_view name);

// The closest of `candidates` to `word` by edit distance, if it is close enough
// to be a plausible typo ("prot" -> "port").
std::optional<std::string> closest_match(std::string_view word,
                                         const std::vector<std::string>& candidates);

} // namespace common
