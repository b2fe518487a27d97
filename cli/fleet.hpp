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
    std::string previous; // PRODUCTION before the deploy ("" = none: a first deploy)
    std::string release;  // the release created ("" = none yet), or the one serving (unchanged)
    bool unchanged = false; // PRODUCTION already served this tree and config: nothing created
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
    // Puts run.previous back in production.
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

// What `status` or `releases` learnt from one host.
struct HostView {
    std::string host;
    std::string production; // "" = nothing in production
    std::string note;       // e.g. the URL, or "3 releases"
    std::optional<common::Error> error;
};

// The table that ends `status` / `releases` over several hosts; `consistent` is false
// when the reachable hosts do not all have the same PRODUCTION release.
output::Summary compare_hosts(const std::string& command, const std::vector<HostView>& views);

// With several hosts, prints compare_hosts() of what each host answered (`views`) or the
// error it gave, in the target's order. Nothing with one host.
void report_hosts(Context& ctx, const Target& target, const std::string& command,
                  const std::map<std::string, HostView>& views,
                  const std::map<std::string, common::Error>& errors);

} // namespace cli
