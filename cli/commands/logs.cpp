// deployctl logs [RELEASE] [-f]: build and app output of a release.

#include <cli/commands/commands.hpp>
#include <cli/target.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <vector>

namespace cli::commands {

common::Status logs(Context& ctx, const LogsOptions& options) {
    if (!options.release.empty())
        if (auto st = check_release_id(options.release); !st)
            return st;
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    if (options.follow && target->hosts.size() > 1)
        return common::make_error(common::ErrorKind::usage,
                                  "logs -f follows one agent at a time: choose it with --host URL");
    std::vector<std::string> query;
    if (!options.release.empty())
        query.push_back(fmt::format("release={}", options.release));
    if (options.follow)
        query.emplace_back("follow=1");
    std::string path = fmt::format("{}/logs{}{}", app_path(target->app), query.empty() ? "" : "?",
                                   fmt::join(query, "&"));
    return for_each_host(ctx, *target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             auto st = client.stream_ndjson(path, [&](const nlohmann::json& event) {
                                 if (event.value("event", "") != "done")
                                     ctx.out->emit(output::AgentEvent{host, event});
                                 return true;
                             });
                             if (!st)
                                 return st;
                             if (options.follow)
                                 return common::make_error(
                                     common::ErrorKind::connection,
                                     fmt::format("the agent at {} ended the log stream", host));
                             return {};
                         });
}

} // namespace cli::commands
