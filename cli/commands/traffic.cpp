// deployctl maintenance [on|off], pause and resume: how deploy-proxy treats the
// app's requests on each host (docs/traffic.md).

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/target.hpp>
#include <common/duration.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace cli::commands {

namespace {

using common::ErrorKind;

struct TrafficOptions {
    std::string message;
    std::string retry_after; // "5m"
    std::string timeout;     // "30s"
};

// `what` is "show", "on", "off", "pause" or "resume".
common::Status traffic(Context& ctx, const std::string& what, const TrafficOptions& options) {
    nlohmann::json body = nlohmann::json::object();
    if (what == "on") {
        if (!options.message.empty())
            body["message"] = options.message;
        if (!options.retry_after.empty()) {
            auto seconds = common::parse_duration(options.retry_after);
            if (!seconds || seconds->count() % 1000 != 0)
                return common::make_error(ErrorKind::usage,
                                          "--retry-after " + options.retry_after +
                                              ": expected whole seconds such as 30s, 5m or 1h");
            body["retry_after"] = seconds->count() / 1000;
        }
    } else if (what == "pause" && !options.timeout.empty()) {
        auto timeout = common::parse_duration(options.timeout);
        if (!timeout || timeout->count() <= 0)
            return common::make_error(ErrorKind::usage, "--timeout " + options.timeout +
                                                            ": expected a duration such as "
                                                            "30s or 5m");
        body["timeout_ms"] = timeout->count();
    }
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    const std::string base = app_path(target->app);
    return for_each_host(
        ctx, *target, OnError::keep_going,
        [&](transport::Client& client, const std::string& host) -> common::Status {
            auto answer = what == "show"  ? client.get_json(base + "/traffic")
                          : what == "on"  ? client.post_json(base + "/maintenance", body)
                          : what == "off" ? client.remove(base + "/maintenance")
                                          : client.post_json(base + "/" + what, body);
            if (!answer)
                return answer.error();
            ctx.out->emit(output::TrafficChanged{host, what, *answer});
            return {};
        });
}

} // namespace

void add_traffic(CLI::App& app, Context& ctx) {
    auto options = std::make_shared<TrafficOptions>();
    auto* maintenance = app.add_subcommand(
        "maintenance", "Show, turn on or turn off maintenance mode: deploy-proxy answers the "
                       "app's hosts with 503 and a maintenance page");
    maintenance->footer(
        "Maintenance mode lasts across deploys, rollbacks and agent and proxy restarts until\n"
        "turned off. Browsers get the release's maintenance.html (at the root of the app, or\n"
        "of its [static] dir) or a built-in page with the message; clients that accept only\n"
        "JSON get {\"error\": MESSAGE}. The agent's health checks still reach the app.\n\n"
        "Examples:\n  deployctl maintenance on --message \"Back at 10:00 UTC\" --retry-after 30m\n"
        "  deployctl maintenance\n  deployctl maintenance off\n");
    maintenance->callback([&ctx, options, maintenance] {
        if (maintenance->get_subcommands().empty())
            ctx.command = [&ctx, options] { return traffic(ctx, "show", *options); };
    });
    auto* on = maintenance->add_subcommand("on", "Answer every request of the app with 503");
    on->add_option("-m,--message", options->message,
                   "The text of the built-in page and of the JSON error (at most 4096 bytes)");
    on->add_option("--retry-after", options->retry_after,
                   "Sent as Retry-After, e.g. 5m (default: none)");
    on->footer("Examples:\n  deployctl maintenance on\n"
               "  deployctl maintenance on -m \"Upgrading the database\" --retry-after 5m\n");
    on->callback([&ctx, options] {
        ctx.command = [&ctx, options] { return traffic(ctx, "on", *options); };
    });
    maintenance->add_subcommand("off", "Serve the app's requests again")
        ->footer("Examples:\n  deployctl maintenance off\n")
        ->callback([&ctx, options] {
            ctx.command = [&ctx, options] { return traffic(ctx, "off", *options); };
        });

    auto* pause = app.add_subcommand(
        "pause", "Hold the app's new requests at deploy-proxy (they wait, they are not "
                 "refused) until deployctl resume");
    pause->add_option("--timeout", options->timeout,
                      "A request held longer gets 503 (default 30s)");
    pause->footer(
        "Held requests are sent on in the order they came once resumed. Upgraded connections\n"
        "(WebSockets) already open stay open; requests under way finish. The pause lasts\n"
        "across agent restarts until deployctl resume.\n\n"
        "Examples:\n  deployctl pause --timeout 1m && ./migrate-by-hand && deployctl resume\n");
    pause->callback([&ctx, options] {
        ctx.command = [&ctx, options] { return traffic(ctx, "pause", *options); };
    });
    app.add_subcommand("resume", "Release the requests held by deployctl pause, in order")
        ->footer("Examples:\n  deployctl resume\n  deployctl resume -a hello -t production\n")
        ->callback([&ctx, options] {
            ctx.command = [&ctx, options] { return traffic(ctx, "resume", *options); };
        });
}

} // namespace cli::commands
