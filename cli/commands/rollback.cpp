// deployctl rollback [RELEASE]: promote an INACTIVE release back to PRODUCTION.

#include <cli/commands/commands.hpp>
#include <cli/release/steps.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

namespace cli::commands {

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

} // namespace cli::commands
