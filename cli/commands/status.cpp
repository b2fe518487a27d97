// deployctl status: the app's PRODUCTION release, URL and recent releases; with several
// hosts, each host's, then a table that shows whether they differ.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/fleet.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

namespace cli::commands {

namespace {

std::string string_at(const nlohmann::json& object, const char* key) {
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

common::Status status(Context& ctx) {
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    std::map<std::string, HostView> views;
    std::map<std::string, common::Error> errors;
    auto result = for_each_host(
        ctx, *target, OnError::keep_going,
        [&](transport::Client& client, const std::string& host) -> common::Status {
            auto answer = client.get_json(app_path(target->app));
            if (!answer)
                return answer.error();
            ctx.out->emit(output::Status{host, *answer});
            views[host] = HostView{host, string_at(*answer, "production"),
                                   string_at(*answer, "url"), std::nullopt};
            return {};
        },
        &errors);
    report_hosts(ctx, *target, "status", views, errors);
    return result;
}

} // namespace

void add_status(CLI::App& app, Context& ctx) {
    app.add_subcommand("status", "Show the PRODUCTION release, its URL and recent releases")
        ->footer("Examples:\n  deployctl status\n  deployctl status --json | jq -r .url\n")
        ->callback([&ctx] { ctx.command = [&ctx] { return status(ctx); }; });
}

} // namespace cli::commands
