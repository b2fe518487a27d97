// deployctl apps, stop, start, restart and destroy: what runs on the agents, and an app
// kept stopped, started again, or removed with everything it left there.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/target.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>
#include <string>
#include <unistd.h>

namespace cli::commands {

namespace {

using common::ErrorKind;

common::Status apps(Context& ctx) {
    auto target = resolve_target(ctx, ".", ConfigNeed::hosts_only);
    if (!target)
        return target.error();
    return for_each_host(ctx, *target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             TRY_ASSIGN(auto answer, client.get_json("/v1/apps"));
                             ctx.out->emit(output::Apps{host, answer});
                             return {};
                         });
}

// stop | start | restart of the target's app on each of its hosts.
common::Status app_action(Context& ctx, const std::string& action) {
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    return for_each_host(ctx, *target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             TRY_ASSIGN(auto answer,
                                        client.post_json(app_path(target->app) + "/" + action,
                                                         nlohmann::json::object()));
                             ctx.out->emit(output::AppChanged{host, action, answer});
                             return {};
                         });
}

struct DestroyOptions {
    std::string app;
    bool yes = false;
};

// The user types the app's name on a terminal; no terminal needs --yes.
common::Status confirm_destroy(const Target& target) {
    std::string hosts;
    for (const auto& host : target.hosts)
        hosts += (hosts.empty() ? "" : ", ") + host;
    if (!::isatty(STDIN_FILENO))
        return common::make_error(
            ErrorKind::usage,
            fmt::format("destroy removes {} from {} for good, and there is no terminal to confirm "
                        "on; pass --yes to destroy it without asking",
                        target.app, hosts));
    std::cerr << fmt::format("This removes {} from {}: its processes, containers and images, "
                             "every release, its logs, variables and secrets, and its routes. "
                             "It cannot be undone.\nType the app's name to confirm: ",
                             target.app, hosts)
              << std::flush;
    std::string typed;
    if (!std::getline(std::cin, typed) || typed != target.app)
        return common::make_error(
            ErrorKind::usage,
            fmt::format("'{}' is not '{}': nothing was destroyed", typed, target.app));
    return {};
}

common::Status destroy(Context& ctx, const DestroyOptions& options) {
    if (!ctx.global.app.empty() && ctx.global.app != options.app)
        return common::make_error(ErrorKind::usage,
                                  fmt::format("destroy {} and -a {} name different apps; give "
                                              "the app once",
                                              options.app, ctx.global.app));
    ctx.global.app = options.app;
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    if (auto urls = host_urls(*target); !urls)
        return urls.error();
    if (!options.yes)
        TRY(confirm_destroy(*target));
    return for_each_host(ctx, *target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             TRY_ASSIGN(auto answer, client.remove(app_path(target->app)));
                             ctx.out->emit(output::AppDestroyed{host, answer});
                             return {};
                         });
}

} // namespace

void add_apps(CLI::App& app, Context& ctx) {
    app.add_subcommand("apps", "List the apps on each agent: PRODUCTION release, state "
                               "(running, stopped, failed, no release) and URL")
        ->footer("Examples:\n  deployctl apps --host http://127.0.0.1:7070\n"
                 "  deployctl apps -t production --json\n")
        ->callback([&ctx] { ctx.command = [&ctx] { return apps(ctx); }; });
}

void add_lifecycle(CLI::App& app, Context& ctx) {
    struct Action {
        const char* name;
        const char* help;
        const char* footer;
    };
    const Action actions[] = {
        {"stop",
         "Stop the app's PRODUCTION release; the proxy answers 503 until start (or a deploy or "
         "rollback), also across agent restarts",
         "Examples:\n  deployctl stop\n  deployctl stop -a hello -t production\n"},
        {"start", "Start the app's PRODUCTION release again after stop",
         "Examples:\n  deployctl start\n  deployctl start -a hello\n"},
        {"restart",
         "Start a new process of the PRODUCTION release, health-check it, switch the proxy to "
         "it, then drain and stop the old one (a container is stopped first)",
         "Examples:\n  deployctl restart\n  deployctl restart -a hello -t production\n"},
    };
    for (const auto& action : actions) {
        const std::string name = action.name;
        app.add_subcommand(name, action.help)->footer(action.footer)->callback([&ctx, name] {
            ctx.command = [&ctx, name] { return app_action(ctx, name); };
        });
    }
}

void add_destroy(CLI::App& app, Context& ctx) {
    auto options = std::make_shared<DestroyOptions>();
    auto* cmd = app.add_subcommand(
        "destroy", "Remove an app from its agents: processes, containers, images, releases, "
                   "logs, variables and secrets, routes, and the files no other app uses");
    cmd->add_option("APP", options->app, "The app to remove (typed again to confirm)")->required();
    cmd->add_flag("-y,--yes", options->yes,
                  "Do not ask (needed without a terminal, e.g. in scripts)");
    cmd->footer("Examples:\n  deployctl destroy hello\n  deployctl destroy hello --yes -t "
                "staging\n\nA later deploy of the app starts again at v1.\n");
    cmd->callback(
        [&ctx, options] { ctx.command = [&ctx, options] { return destroy(ctx, *options); }; });
}

} // namespace cli::commands
