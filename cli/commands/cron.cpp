// deployctl cron ls | run NAME: the [[cron]] jobs of deploy.toml (docs/cron.md).

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/target.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <memory>

namespace cli::commands {

namespace {

enum class CronAction { ls, run };

struct CronOptions {
    CronAction action = CronAction::ls;
    std::string name;
};

common::Status list(Context& ctx, const Target& target) {
    return for_each_host(ctx, target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             auto answer = client.get_json(app_path(target.app) + "/cron");
                             if (!answer)
                                 return answer.error();
                             ctx.out->emit(output::CronJobs{host, *answer});
                             return {};
                         });
}

// Jobs run on the target's first host (the one a deploy names to run them).
common::Status run(Context& ctx, Target target, const CronOptions& options) {
    if (target.hosts.size() > 1)
        target.hosts.resize(1);
    return for_each_host(ctx, target, OnError::stop,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             auto answer = client.post_json(app_path(target.app) + "/cron/" +
                                                                options.name + "/runs",
                                                            nlohmann::json::object());
                             if (!answer)
                                 return answer.error();
                             ctx.out->emit(output::CronStarted{host, *answer});
                             return {};
                         });
}

common::Status cron(Context& ctx, const CronOptions& options) {
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    switch (options.action) {
    case CronAction::ls:
        return list(ctx, *target);
    case CronAction::run:
        return run(ctx, *target, options);
    }
    return {};
}

} // namespace

void add_cron(CLI::App& app, Context& ctx) {
    auto options = std::make_shared<CronOptions>();
    auto select = [&ctx, options](CronAction action) {
        return [&ctx, options, action] {
            options->action = action;
            ctx.command = [&ctx, options] { return cron(ctx, *options); };
        };
    };
    auto* cmd = app.add_subcommand("cron", "List or run the app's scheduled jobs ([[cron]] in "
                                           "deploy.toml)");
    cmd->require_subcommand(1);
    cmd->add_subcommand("ls", "List the jobs: schedule, next run, last run (on each host)")
        ->callback(select(CronAction::ls));
    auto* run = cmd->add_subcommand("run", "Run a job now, on the host that runs the jobs");
    run->add_option("NAME", options->name, "The job's name in deploy.toml")->required();
    run->callback(select(CronAction::run));
    cmd->footer("Examples:\n  deployctl cron ls\n  deployctl cron run cleanup\n"
                "  deployctl logs --process cron.cleanup -f\n\n"
                "Jobs run in the PRODUCTION release's environment on the target's first host,\n"
                "one run of a job at a time; their output is in `deployctl logs --process\n"
                "cron.NAME`.\n");
}

} // namespace cli::commands
