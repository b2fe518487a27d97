// deployctl token create|ls|revoke: the agent's API tokens (admin scope).

#include <cli/commands/commands.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

namespace cli::commands {

namespace {

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

} // namespace

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

} // namespace cli::commands
