// deployctl status: the app's PRODUCTION release, URL and recent releases; with several
// hosts, each host's, then a table that shows whether they serve the same thing.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/fleet.hpp>
#include <cli/output/format.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

namespace cli::commands {

namespace {

// The PRODUCTION release object in a status object (null when none).
nlohmann::json production_of(const nlohmann::json& status) {
    auto id = output::json_str(status, "production");
    if (auto it = status.find("releases"); !id.empty() && it != status.end() && it->is_array())
        for (const auto& release : *it)
            if (output::json_str(release, "id") == id)
                return release;
    return nullptr;
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
            views[host] = host_view(host, production_of(*answer), output::json_str(*answer, "url"));
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
