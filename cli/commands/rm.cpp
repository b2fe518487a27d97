// deployctl rm RELEASE: delete a FAILED or INACTIVE release.

#include <cli/commands/commands.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

namespace cli::commands {

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

} // namespace cli::commands
