// deployctl token create|ls|revoke: the agent's API tokens (admin scope).

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

#include <memory>

namespace cli::commands {

namespace {

// deployctl token create|ls|revoke (the app of create is -a/--app).
enum class TokenAction { create, list, revoke };
struct TokenOptions {
    TokenAction action = TokenAction::list;
    bool all_apps = false;
    std::string scope;
    std::string expires;
    std::string name;
    std::string id; // revoke
};

common::Status check(const Context& ctx, const TokenOptions& o) {
    if (o.action != TokenAction::create)
        return {};
    if (o.all_apps == !ctx.global.app.empty())
        return common::make_error(common::ErrorKind::usage,
                                  "token create needs --app NAME or --all-apps (one of them)");
    if (o.scope.empty())
        return common::make_error(common::ErrorKind::usage,
                                  "token create needs --scope read, deploy or admin");
    return {};
}

common::Status run(Context& ctx, const TokenOptions& o, transport::Client& client,
                   const std::string& host) {
    if (o.action == TokenAction::list) {
        auto list = client.get_json("/v1/tokens");
        if (!list)
            return list.error();
        ctx.out->emit(output::Tokens{host, *list});
        return {};
    }
    if (o.action == TokenAction::revoke) {
        auto revoked = client.remove("/v1/tokens/" + o.id);
        if (!revoked)
            return revoked.error();
        ctx.out->emit(output::TokenRevoked{host, *revoked});
        return {};
    }
    nlohmann::json body{{"scope", o.scope}, {"name", o.name}};
    if (o.all_apps)
        body["all_apps"] = true;
    else
        body["app"] = ctx.global.app;
    if (!o.expires.empty())
        body["expires"] = o.expires;
    auto created = client.post_json("/v1/tokens", body);
    if (!created)
        return created.error();
    ctx.out->emit(output::TokenCreated{host, *created});
    return {};
}

common::Status token(Context& ctx, const TokenOptions& options) {
    if (auto ok = check(ctx, options); !ok)
        return ok;
    auto target = resolve_target(ctx, ".", ConfigNeed::hosts_only);
    if (!target)
        return target.error();
    return for_each_host(ctx, *target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) {
                             return run(ctx, options, client, host);
                         });
}

} // namespace

void add_token(CLI::App& app, Context& ctx) {
    auto options = std::make_shared<TokenOptions>();
    auto select = [&ctx, options](TokenAction action) {
        return [&ctx, options, action] {
            options->action = action;
            ctx.command = [&ctx, options] { return token(ctx, *options); };
        };
    };
    auto* cmd = app.add_subcommand("token", "Manage the agents' API tokens (admin scope)");
    cmd->require_subcommand(1);
    auto* create = cmd->add_subcommand(
        "create", "Create a token (-a/--app NAME or --all-apps) and print it once, alone on "
                  "stdout");
    create->add_flag("--all-apps", options->all_apps, "The token may act on every app");
    create->add_option("--scope", options->scope, "read < deploy < admin (each includes the lower)")
        ->check(CLI::IsMember({"read", "deploy", "admin"}));
    create->add_option("--expires", options->expires, "Lifetime, e.g. 30d (default: never)");
    create->add_option("--name", options->name, "A description, shown by token ls and the audit");
    create->callback(select(TokenAction::create));
    cmd->add_subcommand("ls", "List the tokens (never their secrets)")
        ->callback(select(TokenAction::list));
    auto* revoke = cmd->add_subcommand("revoke", "Revoke a token: refused from the next request");
    revoke->add_option("ID", options->id, "The token's id (token ls)")->required();
    revoke->callback(select(TokenAction::revoke));
    cmd->footer("Examples:\n  T=$(deployctl token create --app hello --scope deploy --name ci "
                "--expires 90d)\n  deployctl token ls --json\n  deployctl token revoke "
                "3f2a9c01b2d4\n\nSee docs/security.md.\n");
}

} // namespace cli::commands
