// deployctl completion SHELL: the completion script; deployctl __complete WHAT:
// the words it cannot know in advance (target names, release ids).

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/completion/spec.hpp>
#include <cli/context.hpp>
#include <cli/credentials.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <set>

namespace cli::commands {

namespace {

// The agents of the app answer within a second, or the completion offers nothing.
constexpr long k_release_timeout_s = 1;

void complete_targets(const Context& ctx) {
    auto target = resolve_target(ctx, ".", ConfigNeed::required);
    if (!target || !target->config)
        return;
    for (const auto& [name, _] : target->config->targets)
        std::cout << name << '\n';
}

// The first http(s):// agent of the target: an ssh:// login is not cheap enough.
void complete_releases(const Context& ctx) {
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target || target->app.empty())
        return;
    for (const auto& host : target->hosts) {
        auto url = parse_host_url(host);
        if (!url || url->scheme == Scheme::ssh || !check_transport(*url))
            continue;
        auto token = token_for(url->base_url);
        if (!token)
            return;
        transport::HttpOptions options;
        options.token = token->value;
        options.token_source = token->source;
        options.connect_timeout_s = k_release_timeout_s;
        options.request_timeout_s = k_release_timeout_s;
        if (url->scheme == Scheme::https)
            options.tls = target->tls;
        auto client = transport::make_http_client(url->base_url, options);
        auto answer = client->get_json(app_path(target->app) + "/releases");
        if (!answer || !answer->is_array())
            return;
        for (const auto& release : *answer)
            if (release.contains("id") && release["id"].is_string())
                std::cout << release["id"].get<std::string>() << '\n';
        return;
    }
}

// The script for `shell`, from the whole command tree: the root of `app`.
std::string completion_script(CLI::App& app, const std::string& shell) {
    CLI::App* root = &app;
    while (root->get_parent())
        root = root->get_parent();
    const auto tree = completion::describe(*root);
    if (shell == "zsh")
        return completion::zsh_script(tree);
    if (shell == "fish")
        return completion::fish_script(tree);
    return completion::bash_script(tree);
}

// deployctl completion SHELL: prints `script` (or one JSON event with --json).
common::Status completion(Context& ctx, const std::string& shell, const std::string& script) {
    ctx.out->emit(output::Completion{shell, script});
    return {};
}

// deployctl __complete targets|releases (hidden): one word per line for the completion
// scripts, and at most about a second of waiting for an agent. Prints nothing on any
// error: a completion must never disturb the command line.
common::Status complete_words(Context& ctx, const std::string& what) {
    if (what == "targets")
        complete_targets(ctx);
    else if (what == "releases")
        complete_releases(ctx);
    return {};
}

} // namespace

// `completion SHELL`, and the hidden `__complete WHAT` its scripts call for the
// words they cannot know in advance (group "": not in --help, not completed).
void add_completion(CLI::App& app, Context& ctx) {
    auto shell = std::make_shared<std::string>();
    auto* cmd =
        app.add_subcommand("completion", "Print the shell completion script for bash, zsh or fish");
    cmd->add_option("SHELL", *shell, "bash, zsh or fish")
        ->required()
        ->check(CLI::IsMember({"bash", "zsh", "fish"}));
    cmd->footer("Examples:\n  source <(deployctl completion bash)        # in ~/.bashrc\n"
                "  deployctl completion zsh > \"${fpath[1]}/_deployctl\"\n"
                "  deployctl completion fish > ~/.config/fish/completions/deployctl.fish\n\n"
                "Completes commands, options, target names from deploy.toml (-t) and, from an\n"
                "http(s):// agent answering within a second, release ids (logs, rollback, rm).\n");
    cmd->callback([&ctx, cmd, shell] {
        ctx.command = [&ctx, cmd, shell] {
            return completion(ctx, *shell, completion_script(*cmd, *shell));
        };
    });
    auto what = std::make_shared<std::string>();
    auto* complete = app.add_subcommand("__complete", "Words for the completion scripts");
    complete->group("");
    complete->add_option("WHAT", *what, "targets or releases")->required();
    complete->callback(
        [&ctx, what] { ctx.command = [&ctx, what] { return complete_words(ctx, *what); }; });
}

} // namespace cli::commands
