// deployctl hooks secret [--rotate] | key [--rotate] [--forget-hosts] | ls: the app's
// webhooks and its deploy key (docs/git.md).

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

#include <memory>

namespace cli::commands {

namespace {

enum class HooksAction { secret, key, ls };

struct HooksOptions {
    HooksAction action = HooksAction::ls;
    bool rotate = false;
    bool forget_hosts = false;
};

common::Status hooks(Context& ctx, const HooksOptions& options) {
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    return for_each_host(
        ctx, *target, options.action == HooksAction::ls ? OnError::keep_going : OnError::stop,
        [&](transport::Client& client, const std::string& host) -> common::Status {
            if (options.action == HooksAction::ls) {
                auto answer = client.get_json(app_path(target->app) + "/hooks/deliveries");
                if (!answer)
                    return answer.error();
                ctx.out->emit(output::HookDeliveries{host, *answer});
                return {};
            }
            if (options.action == HooksAction::key) {
                auto answer =
                    client.post_json(app_path(target->app) + "/hooks/key",
                                     nlohmann::json{{"rotate", options.rotate},
                                                    {"forget_hosts", options.forget_hosts}});
                if (!answer)
                    return answer.error();
                ctx.out->emit(output::HookKey{host, *answer});
                return {};
            }
            auto answer = client.post_json(app_path(target->app) + "/hooks/secret",
                                           nlohmann::json{{"rotate", options.rotate}});
            if (!answer)
                return answer.error();
            ctx.out->emit(output::HookSecret{host, *answer});
            return {};
        });
}

} // namespace

void add_hooks(CLI::App& app, Context& ctx) {
    auto options = std::make_shared<HooksOptions>();
    auto select = [&ctx, options](HooksAction action) {
        return [&ctx, options, action] {
            options->action = action;
            ctx.command = [&ctx, options] { return hooks(ctx, *options); };
        };
    };
    auto* cmd = app.add_subcommand("hooks", "The app's webhooks: a push on GitHub, GitLab or "
                                            "Gitea deploys it (docs/git.md)");
    cmd->require_subcommand(1);
    auto* secret = cmd->add_subcommand(
        "secret", "Print the app's webhook secret and the paths to give the provider (the "
                  "secret is made on first use)");
    secret->add_flag("--rotate", options->rotate,
                     "Make a new secret: deliveries signed with the old one are refused");
    secret->callback(select(HooksAction::secret));
    auto* key = cmd->add_subcommand(
        "key", "Print the app's deploy key, the SSH key the agent fetches an ssh [git] url with "
               "(made on first use): add it to the repository's deploy keys, read-only");
    key->add_flag("--rotate", options->rotate,
                  "Make a new key: the old one no longer fetches (remove it from the provider)");
    key->add_flag("--forget-hosts", options->forget_hosts,
                  "Forget the servers' host keys the agent trusted on its first fetch from "
                  "them (after a server's key was changed on purpose)");
    key->callback(select(HooksAction::key));
    cmd->add_subcommand("ls", "Recent deliveries: time, event, commit, release, result")
        ->callback(select(HooksAction::ls));
    cmd->footer("Examples:\n  deployctl hooks secret\n  deployctl hooks secret --rotate\n"
                "  deployctl hooks key > deploy_key.pub\n  deployctl hooks ls\n\n"
                "A push event on the branch of [git] branch makes the agent fetch it from\n"
                "[git] url (deploy.toml of the serving release) and deploy it.\n");
}

} // namespace cli::commands
