// deployctl rm RELEASE: delete a FAILED or INACTIVE release.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

#include <memory>

namespace cli::commands {

namespace {

common::Status remove(Context& ctx, const std::string& release) {
    if (auto st = check_release_id(release); !st)
        return st;
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    return for_each_host(ctx, *target, OnError::stop,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             auto answer =
                                 client.remove(app_path(target->app) + "/releases/" + release);
                             if (!answer)
                                 return answer.error();
                             ctx.out->emit(
                                 output::Removed{host, answer->value("deleted", release)});
                             return {};
                         });
}

} // namespace

void add_rm(CLI::App& app, Context& ctx) {
    auto release = std::make_shared<std::string>();
    auto* cmd = app.add_subcommand("rm", "Delete a FAILED or INACTIVE release");
    cmd->add_option("RELEASE", *release, "Release id, e.g. v2")->required();
    cmd->footer(
        "Examples:\n  deployctl rm v2\n\nThe PRODUCTION release cannot be deleted (exit 5).\n");
    cmd->callback(
        [&ctx, release] { ctx.command = [&ctx, release] { return remove(ctx, *release); }; });
}

} // namespace cli::commands
