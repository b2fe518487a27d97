// deployctl releases: every stored release of the app, newest first.

#include <cli/commands/commands.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

namespace cli::commands {

common::Status releases(Context& ctx) {
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    return for_each_host(ctx, *target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             auto answer = client.get_json(app_path(target->app) + "/releases");
                             if (!answer)
                                 return answer.error();
                             ctx.out->releases(host, *answer);
                             return {};
                         });
}

} // namespace cli::commands
