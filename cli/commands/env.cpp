// deployctl env ls | set KEY=VALUE... [--secret] | unset KEY...: the app's
// variables stored on the agents (docs/security.md "Secrets").

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/secret_input.hpp>
#include <cli/target.hpp>
#include <common/env_name.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>
#include <set>

namespace cli::commands {

namespace {

using common::ErrorKind;
using common::make_error;

enum class EnvAction { ls, set, unset };
struct EnvOptions {
    EnvAction action = EnvAction::ls;
    std::vector<std::string> args; // KEY=VALUE (set) or KEY (unset)
    bool secret = false;
};

// The value of `env set --secret KEY`: typed without echo on a terminal,
// else all of stdin (one trailing newline dropped).
common::Result<std::string> read_secret(const std::string& name) {
    return cli::read_secret("Value of " + name + " (not shown): ", "value for " + name);
}

// KEY=VALUE arguments (or one KEY with --secret, its value from stdin) as the
// API's {"vars": [...]}; every name checked before anything is sent.
common::Result<nlohmann::json> vars_to_set(const EnvOptions& options) {
    if (options.args.empty())
        return make_error(ErrorKind::usage, "env set: expected KEY=VALUE (or --secret KEY)");
    nlohmann::json vars = nlohmann::json::array();
    std::set<std::string> seen;
    for (const auto& arg : options.args) {
        auto eq = arg.find('=');
        std::string name = arg.substr(0, eq);
        if (auto checked = common::check_env_name(name); !checked)
            return checked.error();
        if (!seen.insert(name).second)
            return make_error(ErrorKind::usage, name + " is given twice");
        if (eq == std::string::npos && !(options.secret && options.args.size() == 1))
            return make_error(ErrorKind::usage,
                              "env set: expected KEY=VALUE, not '" + name +
                                  "' (only `env set --secret KEY` reads one value from stdin)");
        vars.push_back({{"name", name}, {"value", ""}, {"secret", options.secret}});
        if (eq != std::string::npos) {
            vars.back()["value"] = arg.substr(eq + 1);
            continue;
        }
        auto value = read_secret(name);
        if (!value)
            return value.error();
        vars.back()["value"] = std::move(*value);
    }
    return nlohmann::json{{"vars", std::move(vars)}};
}

common::Status list(Context& ctx, const Target& target) {
    return for_each_host(ctx, target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             auto answer = client.get_json(app_path(target.app) + "/env");
                             if (!answer)
                                 return answer.error();
                             ctx.out->emit(output::EnvList{host, *answer});
                             return {};
                         });
}

common::Status set(Context& ctx, const Target& target, const EnvOptions& options) {
    auto body = vars_to_set(options);
    if (!body)
        return body.error();
    return for_each_host(ctx, target, OnError::stop,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             auto answer = client.post_json(app_path(target.app) + "/env", *body);
                             if (!answer)
                                 return answer.error();
                             ctx.out->emit(output::EnvChanged{host, *answer});
                             return {};
                         });
}

// Checks that every name is set before removing any, so a typo removes nothing.
common::Status unset(Context& ctx, const Target& target, const EnvOptions& options) {
    if (options.args.empty())
        return make_error(ErrorKind::usage, "env unset: expected one or more KEYs");
    for (const auto& name : options.args)
        if (auto checked = common::check_env_name(name); !checked)
            return checked;
    return for_each_host(
        ctx, target, OnError::stop,
        [&](transport::Client& client, const std::string& host) -> common::Status {
            auto listed = client.get_json(app_path(target.app) + "/env");
            if (!listed)
                return listed.error();
            std::set<std::string> present;
            for (const auto& var : listed->value("vars", nlohmann::json::array()))
                present.insert(var.value("name", ""));
            for (const auto& name : options.args)
                if (!present.count(name))
                    return make_error(
                        ErrorKind::not_found,
                        fmt::format("no variable {} is set for app {}", name, target.app));
            nlohmann::json answer;
            for (const auto& name : options.args) {
                auto removed = client.remove(app_path(target.app) + "/env/" + name);
                if (!removed)
                    return removed.error();
                answer = *removed;
            }
            answer["unset"] = options.args;
            ctx.out->emit(output::EnvChanged{host, answer});
            return {};
        });
}

common::Status env(Context& ctx, const EnvOptions& options) {
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    switch (options.action) {
    case EnvAction::ls:
        return list(ctx, *target);
    case EnvAction::set:
        return set(ctx, *target, options);
    case EnvAction::unset:
        return unset(ctx, *target, options);
    }
    return {};
}

} // namespace

void add_env(CLI::App& app, Context& ctx) {
    auto options = std::make_shared<EnvOptions>();
    auto select = [&ctx, options](EnvAction action) {
        return [&ctx, options, action] {
            options->action = action;
            ctx.command = [&ctx, options] { return env(ctx, *options); };
        };
    };
    auto* cmd = app.add_subcommand("env", "List, set or unset the app's variables and secrets "
                                          "stored on the agents");
    cmd->require_subcommand(1);
    cmd->add_subcommand("ls", "List the variables (secret values are never shown)")
        ->callback(select(EnvAction::ls));
    auto* set = cmd->add_subcommand("set", "Set variables: KEY=VALUE ...");
    set->add_option("KEY=VALUE", options->args,
                    "Variables to set (with --secret: or one KEY alone, its value read from "
                    "stdin)")
        ->required();
    set->add_flag("--secret", options->secret,
                  "Store the values encrypted; they are never shown again and are replaced by "
                  "[redacted] in logs (at least 8 bytes)");
    set->callback(select(EnvAction::set));
    auto* unset = cmd->add_subcommand("unset", "Remove variables: KEY ...");
    unset->add_option("KEY", options->args, "Variables to remove")->required();
    unset->callback(select(EnvAction::unset));
    cmd->footer(
        "Examples:\n  deployctl env set DATABASE_URL=postgres://db/app LOG_LEVEL=debug\n"
        "  deployctl env set --secret API_KEY            # typed without echo, or from stdin:\n"
        "  pass show api-key | deployctl env set --secret API_KEY\n"
        "  deployctl env ls\n  deployctl env unset LOG_LEVEL\n\n"
        "Variables can be set before the app's first deploy. They override deploy.toml [env]\n"
        "values of the same name and reach the app (and build.command; secrets only when\n"
        "listed in [build] secrets) when a release starts: a change takes effect at the next\n"
        "deploy or rollback. `env set --secret KEY=VALUE` works too, but leaves the value in\n"
        "your shell history and in the process list.\n");
}

} // namespace cli::commands
