// deployctl deploy [DIR]: package the git tree, upload what is missing,
// create the deployment and follow it.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/fleet.hpp>
#include <cli/output/format.hpp>
#include <cli/output/grouped.hpp>
#include <cli/package/deployed_config.hpp>
#include <cli/release/steps.hpp>
#include <cli/target.hpp>
#include <common/config.hpp>
#include <common/duration.hpp>
#include <common/hash.hpp>
#include <common/manifest.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unistd.h>

namespace cli::commands {

namespace {

using release::end_canary;
using release::follow_release;
using release::promote;
using release::upload_blobs;

struct DeployOptions {
    std::string dir = ".";
    bool no_follow = false;
    bool dirty = false;
    // Several hosts (docs/multi-host.md): override [deploy] strategy / max_parallel.
    std::string strategy; // "" = deploy.toml's (default parallel)
    int max_parallel = 0; // 0 = deploy.toml's (default: all hosts)
    bool no_rollback = false;
    bool force = false;    // a new release even when PRODUCTION already serves this tree and config
    bool rebuild = false;  // build even when an earlier build had the same inputs
    bool no_cache = false; // build without restoring the app's build cache
    // --canary PCT [--auto D] [--max-error-rate P]: CANARY with PCT% of the traffic.
    int canary = 0;
    std::string canary_auto;
    double max_error_rate = 1;
};

void report_package(Context& ctx, const Target& target, const package::SourceTree& tree) {
    for (const auto& w : tree.warnings())
        ctx.out->emit(output::Warning{w});
    output::PackageSummary summary;
    summary.app = target.app;
    summary.commit = tree.commit();
    summary.message = tree.message();
    const auto figures = tree.figures();
    summary.files = figures.files;
    summary.bytes = figures.bytes;
    summary.dirty = tree.dirty();
    ctx.out->emit(summary);
}

// What git's status of the working tree found that the deployment left out: said once the
// deployment is done, as git reads the working tree meanwhile (a stat of every file) instead
// of before the upload.
void report_uncommitted(Context& ctx, const package::SourceTree& tree) {
    const auto count = tree.uncommitted();
    if (!count)
        ctx.out->emit(output::Warning{"cannot tell whether there are uncommitted changes (git's "
                                      "status of the working tree: " +
                                      count.error().message + ")"});
    else if (*count > 0)
        ctx.out->emit(output::Warning{fmt::format("{} uncommitted change{} not included (commit "
                                                  "them, or pass --dirty)",
                                                  *count, *count == 1 ? " was" : "s were")});
}

nlohmann::json deployment_request(const Target& target, const package::SourceTree& tree,
                                  bool force) {
    // The tree goes in per host: its root digest, or for an older agent its manifest.
    return {{"config", target.config_text},
            {"commit", tree.commit()},
            {"message", tree.message()},
            {"dirty", tree.dirty()},
            {"force", force}};
}

// How to go over the hosts: deploy.toml's [deploy], then the command line.
common::Result<FleetOptions> fleet_options(const Target& target, const DeployOptions& options,
                                           std::size_t hosts) {
    FleetOptions fleet;
    if (target.config) {
        fleet.strategy = target.config->deploy.strategy;
        fleet.max_parallel = target.config->deploy.max_parallel;
    }
    if (!options.strategy.empty()) {
        auto strategy = common::parse_strategy(options.strategy);
        if (!strategy)
            return common::make_error(common::ErrorKind::usage,
                                      "--strategy must be parallel or rolling");
        fleet.strategy = *strategy;
    }
    if (options.max_parallel > 0)
        fleet.max_parallel = options.max_parallel;
    fleet.rollback = !options.no_rollback;
    fleet.follow = !options.no_follow;
    fleet.several = hosts > 1;
    fleet.release_first = fleet.several && target.config && !target.config->release.command.empty();
    if (!fleet.follow && fleet.release_first)
        return common::make_error(common::ErrorKind::usage,
                                  "--no-follow cannot deploy to several hosts with a [release] "
                                  "command: the first host's release must succeed before the "
                                  "others start (docs/multi-host.md)");
    if (!fleet.follow && fleet.strategy == common::DeployStrategy::rolling && hosts > 1)
        return common::make_error(common::ErrorKind::usage,
                                  "--no-follow and a rolling deploy exclude each other: each host "
                                  "must reach PRODUCTION before the next starts");
    return fleet;
}

// The PRODUCTION release of the app on one agent ("" when none, or the app is new).
common::Result<std::string> production_release(transport::Client& client, const std::string& app) {
    auto status = client.get_json(app_path(app));
    if (!status) {
        if (status.error().kind == common::ErrorKind::not_found)
            return std::string();
        return status.error();
    }
    return output::json_str(*status, "production");
}

// The app's next free release id on one agent, asked again after it refused the fleet's.
common::Result<std::string> fleet_next_release(transport::Client& client, const std::string& app) {
    auto status = client.get_json(app_path(app));
    if (!status)
        return status.error();
    return output::json_str(*status, "next_release");
}

// Deploying to one host (on its own thread), and rolling it back.
// With one host there is nothing to roll back across hosts: no lookup of the release it
// serves (one request less, and a token refused for the app is refused by the deploy's
// first POST, which the agent's audit records).
// With several hosts, every host's release gets the id in `fleet_id` (docs/design.md §9).
HostSteps deploy_steps(Context& ctx, const Target& target, const package::SourceTree& tree,
                       const nlohmann::json& request, const DeployOptions& options, bool several,
                       FleetReleaseId* fleet_id) {
    HostSteps steps;
    steps.deploy = [&, several, fleet_id](transport::Client& client, HostRun& run,
                                          output::Printer& out) -> common::Status {
        Context host_ctx = ctx;
        host_ctx.out = &out;
        auto started = std::chrono::steady_clock::now();
        if (several) {
            auto previous = production_release(client, target.app);
            if (!previous)
                return previous.error();
            run.previous = *previous;
        }
        auto uploaded = upload_blobs(client, tree, out, run.host);
        if (!uploaded)
            return uploaded.error();
        const auto path = app_path(target.app) + "/deployments";
        auto host_request = request;
        if (!uploaded->tree.empty())
            host_request["tree"] = uploaded->tree;
        else if (auto loaded = tree.load(); !loaded) // uploaded without it: an older agent
            return loaded.error();
        else
            host_request["manifest"] = common::manifest_to_json(tree.manifest());
        if (!run.release_command) // the fleet's first host runs it
            host_request["release_command"] = false;
        if (!run.cron) // the fleet's first host runs [[cron]] jobs
            host_request["cron"] = false;
        auto created = fleet_id ? fleet_id->create(
                                      run.host,
                                      [&](const std::string& id) {
                                          auto body = host_request;
                                          body["release"] = id;
                                          return client.post_json(path, body);
                                      },
                                      [&] { return fleet_next_release(client, target.app); }, out)
                                : client.post_json(path, host_request);
        if (!created)
            return created.error();
        run.release = created->value("release", "");
        if (output::json_true(*created, "unchanged") && !run.release.empty()) {
            run.unchanged = true;
            out.emit(output::Unchanged{run.host, run.release, output::json_str(*created, "commit"),
                                       output::json_true(*created, "dirty"),
                                       output::json_str(*created, "url")});
            return {};
        }
        if (run.release.empty())
            return common::make_error(common::ErrorKind::internal,
                                      "the agent created a deployment but did not say its id");
        out.emit(output::Created{run.host, run.release, created->value("state", "QUEUED")});
        run.canary = options.canary > 0;
        if (options.no_follow)
            return {};
        return follow_release(host_ctx, client, run.host, target.app, run.release, started);
    };
    steps.roll_back = [&](transport::Client& client, const HostRun& run,
                          output::Printer& out) -> common::Status {
        if (run.canary) // PRODUCTION never changed: the canary goes
            return end_canary(client, out, run.host, target.app, "abort");
        return promote(client, out, run.host, target.app, {{"release", run.previous}});
    };
    return steps;
}

// Clients opened ahead, one thread each, by base URL; the threads end before this does.
class PreOpened {
  public:
    using Opened = common::Result<std::unique_ptr<transport::Client>>;
    PreOpened() = default;
    PreOpened(const PreOpened&) = delete;
    PreOpened& operator=(const PreOpened&) = delete;
    ~PreOpened() {
        for (auto& [url, one] : m_opening)
            if (one->thread.joinable())
                one->thread.join();
    }
    void start(const HostUrl& url, std::function<Opened()> open) {
        auto one = std::make_unique<Opening>();
        one->thread = std::thread(
            [&result = one->result, open = std::move(open)] { result.emplace(open()); });
        m_opening.emplace(url.base_url, std::move(one));
    }
    // The client opened for `base_url` (once), or nullopt when none was.
    std::optional<Opened> take(const std::string& base_url) {
        std::lock_guard lock(m_mutex);
        auto it = m_opening.find(base_url);
        if (it == m_opening.end() || it->second->taken)
            return std::nullopt;
        it->second->thread.join();
        it->second->taken = true;
        return std::move(*it->second->result);
    }

  private:
    struct Opening {
        std::thread thread;
        std::optional<Opened> result;
        bool taken = false;
    };
    std::map<std::string, std::unique_ptr<Opening>> m_opening;
    std::mutex m_mutex; // take() is called from a thread per host
};

common::Status deploy(Context& ctx, const DeployOptions& options) {
    auto t0 = std::chrono::steady_clock::now();
    // A committed tree's files are listed once deploy.toml is read and the ssh:// hosts are
    // being logged in to (below).
    auto packaged = package::package_source(
        options.dir, options.dirty ? package::Mode::dirty : package::Mode::committed,
        package::Walk::at_load);
    // The packaged tree (a manifest of every file, the git repository's caches) lives until
    // the process ends: freeing 20,000 files' worth of small objects took 30 ms after the
    // deployment's last event, for memory the exit gives back anyway.
    static std::optional<common::Result<package::SourceTree>>* kept =
        new std::optional<common::Result<package::SourceTree>>();
    auto& tree = kept->emplace(std::move(packaged));
    // git's status thread ends before the process does, whatever returns below (the tree is
    // never destroyed, and libgit2 is shut down at exit).
    struct WaitStatus {
        const common::Result<package::SourceTree>& tree;
        ~WaitStatus() {
            if (tree)
                (void)tree->uncommitted();
        }
    } wait_status{tree};
    if (!tree) {
        // No tree to read deploy.toml from (not a git repository, no commit): what is wrong
        // with the working copy's comes first, as it did before anything was packaged.
        if (auto working = resolve_target(ctx, options.dir, ConfigNeed::required); !working)
            return working.error();
        return tree.error();
    }
    const auto nothing_to_deploy = [&] {
        return common::make_error(
            common::ErrorKind::usage,
            fmt::format("nothing to deploy: {} has no committed files", options.dir));
    };
    if (tree->empty() && !tree->dirty())
        return nothing_to_deploy();
    // deploy.toml is read from the tree deployed, never from a file it does not have.
    auto deployed = package::deployed_config(options.dir, *tree);
    if (!deployed)
        return deployed.error();
    ConfigText given{deployed->text, deployed->source};
    auto target = resolve_target(ctx, options.dir, ConfigNeed::required, &given);
    if (!target)
        return target.error();
    auto urls = host_urls(*target);
    if (!urls)
        return urls.error();
    auto fleet = fleet_options(*target, options, urls->size());
    if (!fleet)
        return fleet.error();
    // Both ask for a build, so they make a release even of the tree PRODUCTION serves.
    auto request =
        deployment_request(*target, *tree, options.force || options.rebuild || options.no_cache);
    if (options.rebuild)
        request["rebuild"] = true;
    if (options.no_cache)
        request["no_cache"] = true;
    if (options.canary > 0) {
        request["canary"] = options.canary;
        request["canary_max_error_rate"] = options.max_error_rate;
    } else if (!options.canary_auto.empty()) {
        return common::make_error(common::ErrorKind::usage, "--auto needs --canary PCT");
    }
    if (!options.canary_auto.empty()) {
        auto after = common::parse_duration(options.canary_auto);
        if (!after)
            return common::make_error(common::ErrorKind::usage, "--auto: " + after.error().message);
        request["canary_auto_seconds"] = std::max<std::int64_t>(
            1, std::chrono::duration_cast<std::chrono::seconds>(*after).count());
    }
    // ssh:// hosts are logged in to (a few hundred milliseconds each) while the tree's files
    // are listed: a thread per host, its client taken by the first connect() to the host. (A
    // tree that cannot be deployed is refused once the logins ended.) A tree deployed before
    // is not listed at all (its record; SourceTree::load()).
    PreOpened pre_opened;
    if (!tree->loaded() && tree->known_root().empty()) {
        for (const auto& url : *urls)
            if (url.scheme == Scheme::ssh)
                pre_opened.start(url, [&ctx, &target, url] {
                    return ctx.connect(url, target->ssh, target->tls);
                });
        if (auto loaded = tree->load(); !loaded)
            return loaded.error();
    }
    if (tree->figures().files == 0)
        return nothing_to_deploy();
    if (deployed->warning)
        ctx.out->emit(output::Warning{*deployed->warning});
    report_package(ctx, *target, *tree);
    ctx.out->set_several_hosts(fleet->several);

    OpenHost connect = [&](const HostUrl& url) {
        if (auto client = pre_opened.take(url.base_url))
            return std::move(*client);
        return ctx.connect(url, target->ssh, target->tls);
    };
    // Several hosts: one release id on all of them, the highest next free one.
    std::map<std::string, std::unique_ptr<transport::Client>> clients;
    std::mutex clients_mutex;
    std::optional<FleetReleaseId> fleet_id;
    if (fleet->several)
        if (auto id = fleet_release_id(ask_next_releases(*urls, connect, target->app, clients));
            !id.empty())
            fleet_id.emplace(id);
    OpenHost open = [&](const HostUrl& url) -> common::Result<std::unique_ptr<transport::Client>> {
        {
            std::lock_guard lock(clients_mutex);
            if (auto it = clients.find(url.base_url); it != clients.end() && it->second) {
                auto client = std::move(it->second); // opened to ask the next id
                clients.erase(it);
                return client;
            }
        }
        return connect(url);
    };
    auto steps = deploy_steps(ctx, *target, *tree, request, options, fleet->several,
                              fleet_id ? &*fleet_id : nullptr);

    using output::GroupedOutput;
    bool tty = !ctx.global.json && !ctx.global.quiet && fleet->several && isatty(STDOUT_FILENO);
    GroupedOutput grouped(
        *ctx.out, ctx.global.json ? GroupedOutput::Mode::immediate : GroupedOutput::Mode::grouped,
        tty ? &std::cout : nullptr);
    auto runs = run_fleet(*urls, open, steps, *fleet, grouped);
    if (!options.dirty)
        report_uncommitted(ctx, *tree);
    auto result = fleet_result(runs);
    if (!fleet->several)
        return runs.front().error ? common::Status(*runs.front().error) : result;
    auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    ctx.out->emit(summarize(runs, *fleet, elapsed));
    return result;
}

} // namespace

void add_deploy(CLI::App& app, Context& ctx) {
    auto options = std::make_shared<DeployOptions>();
    auto* cmd = app.add_subcommand("deploy", "Package the app's committed git tree, upload it and "
                                             "follow the deployment");
    cmd->add_option("DIR", options->dir, "The app's folder (default: .)");
    cmd->add_flag("--no-follow", options->no_follow, "Return once the release is queued");
    cmd->add_flag("--dirty", options->dirty,
                  "Include uncommitted changes (modified and untracked, not ignored, files)");
    cmd->add_option("--strategy", options->strategy,
                    "Several hosts: parallel (default) or rolling (one at a time, each "
                    "PRODUCTION before the next); overrides [deploy] strategy")
        ->check(CLI::IsMember({"parallel", "rolling"}));
    cmd->add_option("--max-parallel", options->max_parallel,
                    "Several hosts, parallel: at most N at once (default: all); overrides "
                    "[deploy] max_parallel")
        ->type_name("N")
        ->check(CLI::Range(1, 1000));
    cmd->add_flag("--force", options->force,
                  "Make a new release even when PRODUCTION already serves this tree and "
                  "deploy.toml (default: nothing to do); e.g. to apply changed env variables");
    cmd->add_flag("--rebuild", options->rebuild,
                  "Build even when an earlier build on the host had the same inputs (default: "
                  "its output is reused, \"build reused from vN\"); implies --force");
    cmd->add_flag("--no-cache", options->no_cache,
                  "Build without restoring the app's build cache ([build] cache and "
                  "$CACHE_DIR start empty; a successful build saves them again); implies "
                  "--force. See deployctl build-cache");
    cmd->add_option("--canary", options->canary,
                    "Once healthy, send PCT% of the app's clients to the new release (CANARY, "
                    "sticky per client) instead of switching; then deployctl canary "
                    "promote|abort")
        ->type_name("PCT")
        ->check(CLI::Range(1, 100));
    cmd->add_option("--auto", options->canary_auto,
                    "With --canary: after DURATION (e.g. 5m) promote the canary, or abort it "
                    "if its 5xx rate is above PRODUCTION's by more than --max-error-rate")
        ->type_name("DURATION");
    cmd->add_option("--max-error-rate", options->max_error_rate,
                    "With --auto: the percentage points of 5xx the canary may have above "
                    "PRODUCTION (default 1)")
        ->type_name("P")
        ->check(CLI::Range(0.0, 100.0));
    cmd->add_flag("--no-rollback", options->no_rollback,
                  "Several hosts: when one fails, leave the hosts that switched on the new "
                  "release (default: roll them back)");
    cmd->footer("Examples:\n  deployctl deploy\n  deployctl deploy apps/web -t staging\n"
                "  deployctl deploy --host http://127.0.0.1:7070 --dirty\n"
                "  deployctl deploy --json --no-follow   # in CI\n"
                "  deployctl deploy -t production --strategy rolling\n"
                "  deployctl deploy --canary 10 --auto 5m\n\n"
                "deploy.toml is read from the tree deployed: HEAD's, or the working tree's with\n"
                "--dirty. A host whose PRODUCTION release was made from the same tree and\n"
                "deploy.toml gets no new release (\"nothing to do\") unless --force.\n"
                "A build whose inputs (tree, build command and environment, engine) equal an\n"
                "earlier successful build's on that host reuses its output unless --rebuild\n"
                "(docs/build-cache.md).\n"
                "A file name with a control character (newline, tab, escape) or that is not\n"
                "valid UTF-8 is refused (exit 2): rename it, or leave it out of git.\n\n"
                "With several hosts: see docs/multi-host.md (strategies, rollback, exit "
                "codes).\n");
    cmd->callback(
        [&ctx, options] { ctx.command = [&ctx, options] { return deploy(ctx, *options); }; });
}

} // namespace cli::commands
