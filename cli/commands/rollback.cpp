// deployctl rollback [RELEASE]: promote an INACTIVE release back to PRODUCTION.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/release/steps.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

#include <memory>

namespace cli::commands {

namespace {

using release::promote;

common::Status rollback(Context& ctx, const std::string& release) {
    if (!release.empty())
        if (auto st = check_release_id(release); !st)
            return st;
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    nlohmann::json body = nlohmann::json::object();
    if (!release.empty())
        body["release"] = release;
    return for_each_host(ctx, *target, OnError::stop,
                         [&](transport::Client& client, const std::string& host) {
                             return promote(client, *ctx.out, host, target->app, body);
                         });
}

} // namespace

void add_rollback(CLI::App& app, Context& ctx) {
    auto release = std::make_shared<std::string>();
    auto* cmd = app.add_subcommand("rollback", "Put an older release back in production");
    cmd->add_option("RELEASE", *release,
                    "INACTIVE release to promote (default: the newest older one)");
    cmd->footer("Examples:\n  deployctl rollback\n  deployctl rollback v2\n");
    cmd->callback(
        [&ctx, release] { ctx.command = [&ctx, release] { return rollback(ctx, *release); }; });
}

} // namespace cli::commands
