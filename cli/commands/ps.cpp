// deployctl ps: each process and instance of the app's PRODUCTION release on each host:
// its state, pid or container, uptime, restarts, memory and CPU.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/fleet.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

namespace cli::commands {

namespace {

common::Status ps(Context& ctx) {
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    return for_each_host(ctx, *target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             auto answer = client.get_json(app_path(target->app) + "/ps");
                             if (!answer)
                                 return answer.error();
                             ctx.out->emit(output::Processes{host, *answer});
                             return {};
                         });
}

} // namespace

void add_ps(CLI::App& app, Context& ctx) {
    app.add_subcommand("ps", "List the processes of the app's PRODUCTION release")
        ->footer("Each process ([processes] in deploy.toml; web is the routed one) and instance:\n"
                 "state, pid (or container), uptime, restarts by the agent, memory (RSS of its\n"
                 "process tree) and CPU (percent of one core, sampled over 0.25s).\n\n"
                 "Examples:\n  deployctl ps\n  deployctl ps --json\n")
        ->callback([&ctx] { ctx.command = [&ctx] { return ps(ctx); }; });
}

} // namespace cli::commands
