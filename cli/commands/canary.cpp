// deployctl canary [set N | promote | abort]: the app's CANARY release (deployctl deploy
// --canary PCT) on each of its hosts: its share of the traffic and each side's figures;
// a new share; promote (it becomes PRODUCTION) or abort (stopped, FAILED) on every host.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/release/steps.hpp>
#include <cli/target.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>

namespace cli::commands {

namespace {

struct CanaryOptions {
    std::string action = "show"; // show | set | promote | abort
    int percent = 0;
};

common::Status canary(Context& ctx, const CanaryOptions& options) {
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    const std::string path = app_path(target->app) + "/canary";
    return for_each_host(
        ctx, *target, OnError::keep_going,
        [&](transport::Client& client, const std::string& host) -> common::Status {
            if (options.action == "show") {
                TRY_ASSIGN(auto answer, client.get_json(path));
                ctx.out->emit(output::Canary{host, "show", answer});
            } else if (options.action == "set") {
                TRY_ASSIGN(auto answer,
                           client.post_json(path, nlohmann::json{{"percent", options.percent}}));
                ctx.out->emit(output::Canary{host, "set", answer});
            } else {
                return release::end_canary(client, *ctx.out, host, target->app, options.action);
            }
            return {};
        });
}

} // namespace

void add_canary(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand(
        "canary", "Show the app's canary release (deploy --canary): the split and each side's "
                  "requests, 5xx rate and p95 latency; set, promote or abort it");
    cmd->footer("Examples:\n  deployctl canary\n  deployctl canary set 50\n"
                "  deployctl canary promote\n  deployctl canary abort -t production\n\n"
                "Each host splits its own traffic; promote and abort apply to every host.\n");
    cmd->require_subcommand(0, 1);
    auto show = std::make_shared<CanaryOptions>();
    cmd->callback([&ctx, show, cmd] {
        if (cmd->get_subcommands().empty())
            ctx.command = [&ctx, show] { return canary(ctx, *show); };
    });
    auto set = std::make_shared<CanaryOptions>();
    set->action = "set";
    auto* set_cmd = cmd->add_subcommand("set", "Send N% of the app's clients to the canary");
    set_cmd->add_option("N", set->percent, "The canary's share, in percent (0 to 100)")
        ->required()
        ->check(CLI::Range(0, 100));
    set_cmd->callback([&ctx, set] { ctx.command = [&ctx, set] { return canary(ctx, *set); }; });
    for (const auto& [name, help] :
         {std::pair{"promote", "Make the canary PRODUCTION (the switch and drain of a deploy) on "
                               "every host"},
          std::pair{"abort",
                    "Stop the canary on every host: it becomes FAILED \"canary aborted\""}}) {
        auto options = std::make_shared<CanaryOptions>();
        options->action = name;
        cmd->add_subcommand(name, help)->callback([&ctx, options] {
            ctx.command = [&ctx, options] { return canary(ctx, *options); };
        });
    }
}

} // namespace cli::commands
