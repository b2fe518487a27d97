// deployctl rollback [RELEASE]: promote an INACTIVE release back to PRODUCTION; with several
// hosts, the same release on every host, checked on all of them before any switches.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/fleet.hpp>
#include <cli/output/format.hpp>
#include <cli/release/steps.hpp>
#include <cli/target.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>

namespace cli::commands {

namespace {

using release::promote;
using Clock = std::chrono::steady_clock;

std::int64_t ms_since(Clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// Several hosts (docs/multi-host.md): ask every host first; nothing switches unless every
// host has the release (plan_fleet_rollback). Then one host at a time; when one fails, the
// hosts that switched go back to the release they served before.
common::Status fleet_rollback(Context& ctx, const Target& target, const std::vector<HostUrl>& urls,
                              const std::string& release) {
    const auto t0 = Clock::now();
    ctx.out->set_several_hosts(true);
    std::vector<std::unique_ptr<transport::Client>> clients(urls.size());
    std::vector<RollbackView> views(urls.size());
    for (std::size_t i = 0; i < urls.size(); ++i) {
        views[i].host = urls[i].base_url;
        auto client = ctx.connect(urls[i], target.ssh, target.tls);
        if (!client) {
            views[i].error = client.error();
            continue;
        }
        clients[i] = std::move(*client);
        auto status = clients[i]->get_json(app_path(target.app));
        if (status)
            views[i].status = output::JsonValue(std::move(*status));
        else
            views[i].error = status.error();
    }
    auto plan = plan_fleet_rollback(views, release);
    if (!plan)
        return plan.error();

    output::Summary summary;
    summary.command = "rollback";
    std::optional<common::Error> failure;
    std::string failed_host;
    std::vector<std::size_t> switched;
    for (std::size_t i = 0; i < plan->size(); ++i) {
        const auto& step = (*plan)[i];
        output::SummaryRow row;
        row.host = step.host;
        row.release = step.target;
        row.previous = step.production;
        auto started = Clock::now();
        if (failure) {
            row.state = "NOT_STARTED";
            row.note = "not started: another host failed first";
        } else if (step.unchanged) {
            output::RolledBack live;
            live.host = step.host;
            live.release = step.target;
            live.state = "PRODUCTION";
            live.unchanged = true;
            live.url = output::json_str(**views[i].status, "url");
            ctx.out->emit(live);
            row.state = "PRODUCTION";
            row.note = "already live";
        } else if (auto st = promote(*clients[i], *ctx.out, step.host, target.app,
                                     {{"release", step.target}});
                   st) {
            row.state = "PRODUCTION";
            row.elapsed_ms = ms_since(started);
            switched.push_back(i);
        } else {
            failure = st.error();
            failed_host = step.host;
            ctx.out->emit(output::Error{st.error(), step.host});
            row.state = "FAILED";
            row.elapsed_ms = ms_since(started);
            row.note = st.error().message;
        }
        summary.rows.push_back(std::move(row));
    }
    std::size_t put_back = 0, stuck = 0;
    if (failure)
        for (auto i : switched) {
            const auto& step = (*plan)[i];
            auto& row = summary.rows[i];
            if (step.production.empty())
                continue;
            if (auto st = promote(*clients[i], *ctx.out, step.host, target.app,
                                  {{"release", step.production}})) {
                row.state = "ROLLED_BACK";
                row.note = fmt::format("put back: {} is live again", step.production);
                ++put_back;
            } else {
                ++stuck;
                row.state = "ROLLBACK_FAILED";
                row.note = fmt::format("could not put {} back: {}; {} is still live",
                                       step.production, st.error().message, step.target);
                ctx.out->emit(output::Error{common::Error{st.error().kind, row.note}, step.host});
            }
        }
    summary.elapsed_ms = ms_since(t0);
    summary.ok = !failure;
    for (const auto& row : summary.rows) // the plan: the same release everywhere
        if (row.state != "PRODUCTION")
            summary.consistent = false;
    common::Status result;
    if (failure) {
        std::string message =
            fmt::format("the rollback failed on {}: {}", failed_host, failure->message);
        if (put_back)
            message += fmt::format("; {} host{} put back on the release {} served before", put_back,
                                   put_back == 1 ? "" : "s", put_back == 1 ? "it" : "they");
        if (stuck)
            message +=
                fmt::format("; {} host{} could not be put back", stuck, stuck == 1 ? "" : "s");
        result = common::make_error(stuck ? common::ErrorKind::failed : failure->kind, message);
    }
    summary.exit_code = result ? 0 : common::exit_code(result.error().kind);
    ctx.out->emit(summary);
    return result;
}

common::Status rollback(Context& ctx, const std::string& release) {
    if (!release.empty())
        if (auto st = check_release_id(release); !st)
            return st;
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    auto urls = host_urls(*target);
    if (!urls)
        return urls.error();
    if (urls->size() > 1)
        return fleet_rollback(ctx, *target, *urls, release);
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
                    "INACTIVE release to promote (default: the one that served before the "
                    "current one)");
    cmd->footer("Examples:\n  deployctl rollback\n  deployctl rollback v2\n"
                "  deployctl -t production rollback v7\n\n"
                "With several hosts, every host goes to the same release: each must have it "
                "(INACTIVE, or PRODUCTION already) before any switches; with no RELEASE, the "
                "one each served before must be the same on all of them. See "
                "docs/multi-host.md.\n\n"
                "The release the last switch replaced still runs, unrouted, for [deploy] "
                "standby (10m by default): rolling back to it is a routing switch. Any other is "
                "started and health-checked first.\n");
    cmd->callback(
        [&ctx, release] { ctx.command = [&ctx, release] { return rollback(ctx, *release); }; });
}

} // namespace cli::commands
