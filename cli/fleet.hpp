#pragma once
// A deployment over several hosts (docs/multi-host.md): in parallel, up to max_parallel at
// once, or rolling, one host at a time, each health-gated (its release PRODUCTION) before
// the next starts. Each host runs on its own thread with its own transport::Client. When a
// host fails, no further host is started, the hosts still running finish, and the hosts
// that switched to the new release are rolled back to the release they served before
// (unless --no-rollback). The work on one host is given as HostSteps, so the scheduling
// and the rollback rules have unit tests with fakes.

#include <cli/hosts.hpp>
#include <cli/output/grouped.hpp>
#include <cli/output/printer.hpp>
#include <cli/target.hpp>
#include <cli/transport/client.hpp>
#include <common/config.hpp>
#include <common/result.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace cli {

struct FleetOptions {
    common::DeployStrategy strategy = common::DeployStrategy::parallel;
    int max_parallel = 0; // parallel: hosts at once, 0 = all of them
    bool rollback = true; // false: --no-rollback
    bool follow = true;   // false: --no-follow (a created release counts as success)
    bool several = false; // print each host's errors in its block (else the caller does)
    // deploy.toml has a [release] command: the first host deploys alone (and runs it), the
    // others start only once it succeeded, and skip the command (docs/multi-host.md).
    bool release_first = false;
};

// How one host's deployment ended.
enum class HostOutcome { not_started, unreachable, error, failed, queued, live };

// What happens to a host once every host has finished.
enum class RollbackDecision {
    none,              // nothing failed, or this host did not switch
    roll_back,         // switched and another host failed: back to `previous`
    keep_first_deploy, // switched, but there was no earlier release to go back to
    keep_no_rollback,  // switched, and --no-rollback
};

struct HostRun {
    std::string host;
    HostOutcome outcome = HostOutcome::not_started;
    std::string previous;   // PRODUCTION before the deploy ("" = none: a first deploy)
    std::string release;    // the release created ("" = none yet), or the one serving (unchanged)
    bool unchanged = false; // PRODUCTION already served this tree and config: nothing created
    bool canary = false;    // deploy --canary: the release becomes CANARY, `previous` stays live
    bool release_command = true; // false: the agent skips [release] command (not the first host)
    bool cron = true;            // false: the agent does not run [[cron]] jobs (not the first host)
    std::optional<common::Error> error;
    std::int64_t started_ms = -1; // since the fleet started; -1 = never started
    std::int64_t elapsed_ms = 0;
    RollbackDecision rollback = RollbackDecision::none;
    bool rolled_back = false;
    std::optional<common::Error> rollback_error; // the rollback was tried and failed
    std::unique_ptr<transport::Client> client;   // kept for the rollback
};

// Opens the client of one host (connects and logs in for ssh://).
using OpenHost =
    std::function<common::Result<std::unique_ptr<transport::Client>>(const HostUrl& url)>;

// The work on one host, on its own thread, with its own Client and Printer.
struct HostSteps {
    // Sets run.previous before it creates the release and run.release after. Ok when the
    // release is PRODUCTION (or, not following, created). ErrorKind::failed: it failed.
    std::function<common::Status(transport::Client&, HostRun&, output::Printer&)> deploy;
    // Puts run.previous back in production (a canary: aborts it, `previous` never left).
    std::function<common::Status(transport::Client&, const HostRun&, output::Printer&)> roll_back;
};

// How many hosts run at once: 1 when rolling, else max_parallel (0 = all), at most `hosts`.
std::size_t parallelism(const FleetOptions& options, std::size_t hosts);

bool succeeded(HostOutcome outcome);

RollbackDecision decide_rollback(const HostRun& run, bool any_failed, bool rollback_enabled);

// Runs the deployment on every host as the options say, then the rollbacks. The runs come
// back in the order of `urls`. `out` groups the output per host.
std::vector<HostRun> run_fleet(const std::vector<HostUrl>& urls, const OpenHost& open,
                               const HostSteps& steps, const FleetOptions& options,
                               output::GroupedOutput& out);

// The table that ends the deploy.
output::Summary summarize(const std::vector<HostRun>& runs, const FleetOptions& options,
                          std::int64_t elapsed_ms);

// The error the deploy exits with (ok when every host succeeded): ErrorKind::failed (exit 1)
// when a deployment or a rollback failed, else the most serious host error: unreachable or
// auth (3), timeout (4), refused (5), usage (2), anything else (1).
common::Status fleet_result(const std::vector<HostRun>& runs);

} // namespace cli

namespace cli {

// One release id on every host of a fleet deploy (docs/design.md §9).

// The id a fleet deploy asks every host for: the highest of the hosts' next free ids
// ("v16" of {"v3", "v16", "v1"}); "" when none is a release id.
std::string fleet_release_id(const std::vector<std::string>& next_ids);

// Asks every host, each on its own thread, for the app's next free release id (the status
// object's "next_release"; "v1" where the app is unknown). The clients opened are kept in
// `clients` by base URL, for the deploy to use; a host that cannot answer is left out (its
// deploy reports why).
std::vector<std::string>
ask_next_releases(const std::vector<HostUrl>& urls, const OpenHost& open, const std::string& app,
                  std::map<std::string, std::unique_ptr<transport::Client>>& clients);

// The fleet's release id while the hosts create their releases, one creation at a time.
// A host that refuses the id because another deploy took it meanwhile (refused, and its
// next free id is now above it) moves the id to its next free one, once, and only while
// no host has created a release with the old id; otherwise that host's deploy fails
// (refused) and the fleet rolls back as for any failed host.
class FleetReleaseId {
  public:
    explicit FleetReleaseId(std::string id) : m_id(std::move(id)) {}
    using Create = std::function<common::Result<nlohmann::json>(const std::string& id)>;
    using AskNext = std::function<common::Result<std::string>()>;
    // Creates the release on `host` with `create(id)`; `ask_next` asks the host its next
    // free id again. A warning says so when the id moves.
    common::Result<nlohmann::json> create(const std::string& host, const Create& create,
                                          const AskNext& ask_next, output::Printer& out);
    std::string id() const;

  private:
    mutable std::mutex m_mutex;
    std::string m_id;
    int m_created = 0;
    bool m_moved = false;
};

} // namespace cli

namespace cli {

// What one host said before `rollback` over several hosts (GET /v1/apps/APP).
struct RollbackView {
    std::string host;
    std::optional<common::Error> error;      // it could not say
    std::optional<output::JsonValue> status; // the status object, when it could
};

// What `rollback` does on one host: go to `target`, from `production` (nothing to do
// when it is already there).
struct RollbackStep {
    std::string host;
    std::string target;
    std::string production;
    bool unchanged = false;
};

// Before anything switches: the release every host goes to. With `requested` ("v3"), every
// host must have it, INACTIVE or already PRODUCTION; with none, each host's "previous" (the
// release that served before the current one), and they must all be the same release (the
// same id, or the same commit, tree and deploy.toml). Else the reason, naming the hosts:
// not_found (a host lacks the release), refused (a host has it FAILED, has nothing to go
// back to, or the hosts disagree), or the error a host gave.
common::Result<std::vector<RollbackStep>>
plan_fleet_rollback(const std::vector<RollbackView>& views, const std::string& requested);

// "3f2c1a0+dirty" for a release object (its commit, short; "+dirty" when it was deployed
// with uncommitted changes); "" when it has no commit.
std::string serves_text(const nlohmann::json& release);

} // namespace cli

namespace cli {

// What `status` or `releases` learnt from one host.
struct HostView {
    std::string host;
    std::string production; // "" = nothing in production
    std::string note;       // e.g. the URL, or "3 releases"
    std::optional<common::Error> error;
    // What the PRODUCTION release is (from its release object): what hosts are compared by.
    std::string commit = {};
    bool dirty = false;
    std::string tree_digest = {}; // "" for a release made before agents recorded digests
    std::string config_digest = {};
};

// The HostView of a host whose PRODUCTION release object is `release` (null: none).
HostView host_view(const std::string& host, const nlohmann::json& release, std::string note);

// The table that ends `status` / `releases` over several hosts. Hosts are compared by what
// they serve, not by release ids: `consistent` is false when the reachable hosts do not all
// serve the same commit, tree and deploy.toml (or, for a release without digests, the same
// release id and commit); each row that differs from the first reachable host's says what
// differs in SummaryRow::differs.
output::Summary compare_hosts(const std::string& command, const std::vector<HostView>& views);

// With several hosts, prints compare_hosts() of what each host answered (`views`) or the
// error it gave, in the target's order. Nothing with one host.
void report_hosts(Context& ctx, const Target& target, const std::string& command,
                  const std::map<std::string, HostView>& views,
                  const std::map<std::string, common::Error>& errors);

} // namespace cli
