// deployctl previews: the app's preview environments, one per open pull request
// (docs/git.md).

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

namespace cli::commands {

namespace {

common::Status previews(Context& ctx) {
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    return for_each_host(ctx, *target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             auto answer = client.get_json(app_path(target->app) + "/previews");
                             if (!answer)
                                 return answer.error();
                             ctx.out->emit(output::Previews{host, *answer});
                             return {};
                         });
}

} // namespace

void add_previews(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("previews", "The app's preview environments: one app per "
                                               "open pull request (docs/git.md)");
    cmd->callback([&ctx] { ctx.command = [&ctx] { return previews(ctx); }; });
    cmd->footer("Examples:\n  deployctl previews\n  deployctl previews --json\n\n"
                "With [preview] in the serving release's deploy.toml, a pull request into the\n"
                "deploy branch is deployed as app APP-pr-N (its webhook's pull_request events:\n"
                "opened, new commits, closed); each shows its commit, release, state and URL.\n");
}

} // namespace cli::commands
