// deployctl releases: every stored release of the app, newest first; with several hosts,
// each host's, then a table that shows whether they differ.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/fleet.hpp>
#include <cli/target.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace cli::commands {

namespace {

HostView view_of(const std::string& host, const nlohmann::json& list) {
    std::size_t count = list.is_array() ? list.size() : 0;
    std::string ids;
    nlohmann::json production;
    if (list.is_array())
        for (const auto& r : list) {
            if (r.value("state", "") == "PRODUCTION")
                production = r;
            ids += (ids.empty() ? "" : " ") + r.value("id", "");
        }
    return host_view(
        host, production,
        fmt::format("{} release{}{}", count, count == 1 ? "" : "s", ids.empty() ? "" : ": " + ids));
}

common::Status releases(Context& ctx) {
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    std::map<std::string, HostView> views;
    std::map<std::string, common::Error> errors;
    auto result = for_each_host(
        ctx, *target, OnError::keep_going,
        [&](transport::Client& client, const std::string& host) -> common::Status {
            auto answer = client.get_json(app_path(target->app) + "/releases");
            if (!answer)
                return answer.error();
            ctx.out->emit(output::Releases{host, *answer});
            views[host] = view_of(host, *answer);
            return {};
        },
        &errors);
    report_hosts(ctx, *target, "releases", views, errors);
    return result;
}

} // namespace

void add_releases(CLI::App& app, Context& ctx) {
    app.add_subcommand("releases", "List the app's releases, newest first")
        ->footer("Examples:\n  deployctl releases\n  deployctl releases -a hello --host "
                 "http://127.0.0.1:7070\n")
        ->callback([&ctx] { ctx.command = [&ctx] { return releases(ctx); }; });
}

} // namespace cli::commands
