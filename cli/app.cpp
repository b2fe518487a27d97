// CLI11 wiring: options, subcommands, help texts; the one place errors become exit codes.

#include <CLI/CLI.hpp>
#include <cli/app.hpp>
#include <cli/commands/commands.hpp>
#include <cli/completion/spec.hpp>
#include <cli/context.hpp>
#include <cli/credentials.hpp>
#include <cli/transport/http_client.hpp>
#include <cli/transport/ssh_client.hpp>
#include <common/version.hpp>

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <unistd.h>

namespace cli {

namespace {

const char* k_exit_codes = R"(Exit codes:
  0  success
  1  the deployment failed (build, health check, startup timeout)
  2  usage or config error (bad option, deploy.toml error, unknown release)
  3  cannot reach or authenticate to an agent
  4  waited too long
  5  refused by a rule (e.g. removing the PRODUCTION release)

Agents: --host URL, else $DEPLOYCTL_HOST, else the hosts of the target in deploy.toml
(-t NAME, the only target, or "production"). URLs: https://HOST:PORT (the certificate is
checked against the system's CA store, the target's ca_file, or its pinned fingerprint;
--ca-file / --fingerprint override them), or http://127.0.0.1:PORT for an agent on this
machine (plain HTTP only to loopback), or ssh://USER@HOST[:PORT]: deployctl logs in with ssh-agent or
~/.ssh/id_* (or the target's identity_file), checks the host key against ~/.ssh/known_hosts
and runs `deploy-agent dial-stdio` (or the target's agent_command) on the server.
Tokens: $DEPLOYCTL_TOKEN, else the line "URL TOKEN" for the agent in
~/.config/deployctl/credentials (mode 0600), is sent as a bearer token to https:// and http://
agents (an agent's first admin token is in its DATA_DIR/admin.token).)";

struct Commands {
    commands::AgentQuery agent = commands::AgentQuery::ping;
    commands::DeployOptions deploy;
    commands::LogsOptions logs;
    commands::EnvOptions env;
    commands::TokenOptions token;
    commands::AuditOptions audit;
    commands::InitOptions init;
    std::string release;
    std::string shell;    // completion SHELL
    std::string complete; // __complete WHAT
};

void add_auth_commands(CLI::App& app, Commands& c) {
    auto* token = app.add_subcommand("token", "Manage the agents' API tokens (admin scope)");
    token->require_subcommand(1);
    auto* create = token->add_subcommand(
        "create", "Create a token (-a/--app NAME or --all-apps) and print it once, alone on "
                  "stdout");
    create->add_flag("--all-apps", c.token.all_apps, "The token may act on every app");
    create->add_option("--scope", c.token.scope, "read < deploy < admin (each includes the lower)")
        ->check(CLI::IsMember({"read", "deploy", "admin"}));
    create->add_option("--expires", c.token.expires, "Lifetime, e.g. 30d (default: never)");
    create->add_option("--name", c.token.name, "A description, shown by token ls and the audit");
    create->callback([&c] { c.token.action = commands::TokenAction::create; });
    token->add_subcommand("ls", "List the tokens (never their secrets)")->callback([&c] {
        c.token.action = commands::TokenAction::list;
    });
    auto* revoke = token->add_subcommand("revoke", "Revoke a token: refused from the next request");
    revoke->add_option("ID", c.token.id, "The token's id (token ls)")->required();
    revoke->callback([&c] { c.token.action = commands::TokenAction::revoke; });
    token->footer("Examples:\n  T=$(deployctl token create --app hello --scope deploy --name ci "
                  "--expires 90d)\n  deployctl token ls --json\n  deployctl token revoke "
                  "3f2a9c01b2d4\n\nSee docs/security.md.\n");

    auto* audit = app.add_subcommand(
        "audit", "Show who changed what on the agents (every mutating call), newest first");
    audit->add_option("--limit", c.audit.limit, "At most this many entries")->capture_default_str();
    audit->add_option("--since", c.audit.since, "Only entries since a time (RFC 3339) or for a "
                                                "duration back (1h, 7d)");
    audit->footer("Examples:\n  deployctl audit --host http://127.0.0.1:7070\n"
                  "  deployctl audit -a hello --limit 20\n  deployctl audit --json | jq .who\n\n"
                  "With --app, only that app's entries; a token for one app sees only its app.\n");
}

void add_global_options(CLI::App& app, GlobalOptions& g, std::string& dir) {
    app.add_option("-C", dir, "Run as if deployctl was started in DIR")->type_name("DIR");
    app.add_option("-t,--target", g.target, "Deploy target from deploy.toml [targets.NAME]")
        ->type_name("NAME");
    app.add_option("--host", g.hosts, "Agent URL (repeatable); overrides deploy.toml")
        ->type_name("URL")
        ->allow_extra_args(false) // one URL per --host: `--host URL DIR` keeps DIR
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    app.add_option("-a,--app", g.app, "App name (default: app in deploy.toml)")->type_name("NAME");
    app.add_flag("--json", g.json, "Print NDJSON events, one object per line (docs/json.md)");
    app.add_flag("-q,--quiet", g.quiet, "Print only errors and the final URL");
    app.add_flag("--no-color", g.no_color, "No colours (also when NO_COLOR is set)");
    app.add_flag("--accept-new-host-key", g.accept_new_host_key,
                 "ssh:// hosts: trust and record a server's host key the first time it is seen "
                 "(a changed key is still refused)");
    app.add_option("--ca-file", g.ca_file,
                   "https:// hosts: verify the agent's certificate against this PEM CA bundle "
                   "instead of the system's (replaces the target's ca_file/fingerprint)")
        ->type_name("FILE");
    app.add_option("--fingerprint", g.fingerprint,
                   "https:// hosts: accept only the agent certificate with this SHA-256 "
                   "fingerprint (sha256:AB:CD:..., as openssl prints it; no CA or host name "
                   "check, so a self-signed certificate works)")
        ->type_name("SHA256");
}

void add_env_command(CLI::App& app, Commands& c) {
    auto* env = app.add_subcommand("env", "List, set or unset the app's variables and secrets "
                                          "stored on the agents");
    env->require_subcommand(1);
    env->add_subcommand("ls", "List the variables (secret values are never shown)")
        ->callback([&c] { c.env.action = commands::EnvAction::ls; });
    auto* set = env->add_subcommand("set", "Set variables: KEY=VALUE ...");
    set->add_option("KEY=VALUE", c.env.args, "Variables to set (with --secret: or one KEY alone, "
                                             "its value read from stdin)")
        ->required();
    set->add_flag("--secret", c.env.secret,
                  "Store the values encrypted; they are never shown again and are replaced by "
                  "[redacted] in logs (at least 8 bytes)");
    set->callback([&c] { c.env.action = commands::EnvAction::set; });
    auto* unset = env->add_subcommand("unset", "Remove variables: KEY ...");
    unset->add_option("KEY", c.env.args, "Variables to remove")->required();
    unset->callback([&c] { c.env.action = commands::EnvAction::unset; });
    env->footer(
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

void add_init_command(CLI::App& app, Commands& c) {
    auto* init = app.add_subcommand(
        "init", "Write a commented deploy.toml (and a Dockerfile when the stack needs one) for "
                "the app in DIR, from the stack it detects");
    init->add_option("DIR", c.init.dir, "The app's folder (default: .)");
    init->add_option("--template", c.init.template_name,
                     "Use this template instead of detecting one (see --list)")
        ->type_name("NAME");
    init->add_flag("--force", c.init.force, "Replace an existing deploy.toml or Dockerfile");
    init->add_flag("--list", c.init.list, "List the templates, one line each, and exit");
    init->footer("Examples:\n  deployctl init\n  deployctl init apps/web --template node-server\n"
                 "  deployctl init --list\n  deployctl init --json | jq .evidence\n\n"
                 "Detects, in this order: a Dockerfile; package.json (Next.js, a server such as "
                 "Express\nor Fastify, a static build such as Vite); requirements.txt or "
                 "pyproject.toml (Django,\nFastAPI, Flask); go.mod; composer.json; index.html. "
                 "Nothing found, an unknown\ntemplate, or a file that exists without --force: "
                 "exit 2, nothing written.\n");
}

// `completion SHELL`, and the hidden `__complete WHAT` its scripts call for the
// words they cannot know in advance (group "": not in --help, not completed).
std::string completion_script(CLI::App& app, const std::string& shell) {
    const auto root = completion::describe(app);
    if (shell == "zsh")
        return completion::zsh_script(root);
    if (shell == "fish")
        return completion::fish_script(root);
    return completion::bash_script(root);
}

void add_completion_command(CLI::App& app, Commands& c) {
    auto* completion =
        app.add_subcommand("completion", "Print the shell completion script for bash, zsh or fish");
    completion->add_option("SHELL", c.shell, "bash, zsh or fish")
        ->required()
        ->check(CLI::IsMember({"bash", "zsh", "fish"}));
    completion->footer(
        "Examples:\n  source <(deployctl completion bash)        # in ~/.bashrc\n"
        "  deployctl completion zsh > \"${fpath[1]}/_deployctl\"\n"
        "  deployctl completion fish > ~/.config/fish/completions/deployctl.fish\n\n"
        "Completes commands, options, target names from deploy.toml (-t) and, from an\n"
        "http(s):// agent answering within a second, release ids (logs, rollback, rm).\n");
    auto* complete = app.add_subcommand("__complete", "Words for the completion scripts");
    complete->group("");
    complete->add_option("WHAT", c.complete, "targets or releases")->required();
}

void add_commands(CLI::App& app, Commands& c) {
    auto* deploy =
        app.add_subcommand("deploy", "Package the app's committed git tree, upload it and "
                                     "follow the deployment");
    deploy->add_option("DIR", c.deploy.dir, "The app's folder (default: .)");
    deploy->add_flag("--no-follow", c.deploy.no_follow, "Return once the release is queued");
    deploy->add_flag("--dirty", c.deploy.dirty,
                     "Include uncommitted changes (modified and untracked, not ignored, files)");
    deploy
        ->add_option("--strategy", c.deploy.strategy,
                     "Several hosts: parallel (default) or rolling (one at a time, each "
                     "PRODUCTION before the next); overrides [deploy] strategy")
        ->check(CLI::IsMember({"parallel", "rolling"}));
    deploy
        ->add_option("--max-parallel", c.deploy.max_parallel,
                     "Several hosts, parallel: at most N at once (default: all); overrides "
                     "[deploy] max_parallel")
        ->type_name("N")
        ->check(CLI::Range(1, 1000));
    deploy->add_flag("--no-rollback", c.deploy.no_rollback,
                     "Several hosts: when one fails, leave the hosts that switched on the new "
                     "release (default: roll them back)");
    deploy->footer("Examples:\n  deployctl deploy\n  deployctl deploy apps/web -t staging\n"
                   "  deployctl deploy --host http://127.0.0.1:7070 --dirty\n"
                   "  deployctl deploy --json --no-follow   # in CI\n"
                   "  deployctl deploy -t production --strategy rolling\n\n"
                   "With several hosts: see docs/multi-host.md (strategies, rollback, exit "
                   "codes).\n");

    app.add_subcommand("status", "Show the PRODUCTION release, its URL and recent releases")
        ->footer("Examples:\n  deployctl status\n  deployctl status --json | jq -r .url\n");
    app.add_subcommand("releases", "List the app's releases, newest first")
        ->footer("Examples:\n  deployctl releases\n  deployctl releases -a hello --host "
                 "http://127.0.0.1:7070\n");

    auto* logs = app.add_subcommand("logs", "Show build and app output of a release");
    logs->add_option("RELEASE", c.logs.release, "Release id (default: the PRODUCTION release)");
    logs->add_flag("-f,--follow", c.logs.follow, "Keep streaming new lines");
    logs->footer("Examples:\n  deployctl logs\n  deployctl logs v4\n  deployctl logs -f\n");

    auto* rollback = app.add_subcommand("rollback", "Put an older release back in production");
    rollback->add_option("RELEASE", c.release,
                         "INACTIVE release to promote (default: the newest older one)");
    rollback->footer("Examples:\n  deployctl rollback\n  deployctl rollback v2\n");

    auto* rm = app.add_subcommand("rm", "Delete a FAILED or INACTIVE release");
    rm->add_option("RELEASE", c.release, "Release id, e.g. v2")->required();
    rm->footer(
        "Examples:\n  deployctl rm v2\n\nThe PRODUCTION release cannot be deleted (exit 5).\n");

    auto* agent = app.add_subcommand("agent", "Ask the agents: ping, or info (version, engine, "
                                              "apps)");
    agent->require_subcommand(1);
    agent->add_subcommand("ping", "Check that every agent answers (exit 3 if one does not)")
        ->callback([&c] { c.agent = commands::AgentQuery::ping; });
    agent
        ->add_subcommand("info", "Show each agent's version, engine (docker, podman or "
                                 "process), proxy address, data dir and apps")
        ->callback([&c] { c.agent = commands::AgentQuery::info; });
    agent->footer("Examples:\n  deployctl agent ping --host http://127.0.0.1:7070\n"
                  "  deployctl agent info\n  deployctl agent info --json | jq -r .engine\n");

    add_env_command(app, c);
    add_auth_commands(app, c);
    add_init_command(app, c);
    add_completion_command(app, c);
    app.add_subcommand("version", "Print deployctl's version");
}

common::Status dispatch(CLI::App& app, Context& ctx, const Commands& c) {
    if (app.got_subcommand("completion"))
        return commands::completion(ctx, c.shell, completion_script(app, c.shell));
    if (app.got_subcommand("__complete"))
        return commands::complete_words(ctx, c.complete);
    if (app.got_subcommand("deploy"))
        return commands::deploy(ctx, c.deploy);
    if (app.got_subcommand("status"))
        return commands::status(ctx);
    if (app.got_subcommand("releases"))
        return commands::releases(ctx);
    if (app.got_subcommand("logs"))
        return commands::logs(ctx, c.logs);
    if (app.got_subcommand("rollback"))
        return commands::rollback(ctx, c.release);
    if (app.got_subcommand("rm"))
        return commands::remove(ctx, c.release);
    if (app.got_subcommand("env"))
        return commands::env(ctx, c.env);
    if (app.got_subcommand("agent"))
        return commands::agent(ctx, c.agent);
    if (app.got_subcommand("token"))
        return commands::token(ctx, c.token);
    if (app.got_subcommand("audit"))
        return commands::audit(ctx, c.audit);
    if (app.got_subcommand("init"))
        return commands::init(ctx, c.init);
    return commands::version(ctx);
}

bool wants_json(int argc, char** argv) {
    for (int i = 1; i < argc; ++i)
        if (std::string_view(argv[i]) == "--json")
            return true;
    return false;
}

std::unique_ptr<output::Printer> make_printer(const GlobalOptions& g) {
    if (g.json)
        return output::make_json_printer(std::cout, std::cerr);
    const char* no_color = std::getenv("NO_COLOR");
    output::HumanStyle style;
    style.color =
        !g.no_color && !(no_color && *no_color) && isatty(STDOUT_FILENO) && isatty(STDERR_FILENO);
    style.quiet = g.quiet;
    style.live = isatty(STDOUT_FILENO) != 0; // progress bar and phase line in place
    return output::make_human_printer(style, std::cout, std::cerr);
}

Connect default_connect(const GlobalOptions& g) {
    transport::HttpOptions options;
    if (const char* token = std::getenv("DEPLOYCTL_TOKEN"))
        options.token = token;
    return [options, accept_new = g.accept_new_host_key](const HostUrl& url, const SshSettings& ssh,
                                                         const transport::TlsOptions& tls)
               -> common::Result<std::unique_ptr<transport::Client>> {
        if (url.scheme != Scheme::ssh) {
            auto token = token_for(url.base_url); // over SSH the socket needs none
            if (!token)
                return token.error();
            auto http = options;
            http.token = *token;
            if (url.scheme == Scheme::https)
                http.tls = tls;
            return transport::make_http_client(url.base_url, std::move(http));
        }
        transport::SshOptions ssh_options;
        ssh_options.user = url.user;
        ssh_options.host = url.host;
        ssh_options.port = url.port ? url.port : 22;
        ssh_options.agent_command = ssh.agent_command;
        ssh_options.identity_file = ssh.identity_file;
        ssh_options.accept_new_host_key = accept_new;
        return transport::make_ssh_client(std::move(ssh_options), url.base_url, options);
    };
}

bool is_command(CLI::App& app, const std::string& name) {
    auto found = app.get_subcommands([&](CLI::App* sub) { return sub->check_name(name); });
    return !found.empty();
}

int parse_error(CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
    bool json = wants_json(argc, argv);
    if (e.get_exit_code() == 0)
        return app.exit(e); // --help, --version
    common::Error error{common::ErrorKind::usage, e.what()};
    if (argc > 1 && argv[1][0] != '-' && !is_command(app, argv[1]))
        error.message = fmt::format("unknown command '{}'", argv[1]);
    auto out = json ? output::make_json_printer(std::cout, std::cerr)
                    : output::make_human_printer({}, std::cout, std::cerr);
    out->emit(output::Error{error, ""});
    if (!json)
        std::cerr << "Run 'deployctl --help' for the commands and options.\n";
    return 2;
}

} // namespace

int run(int argc, char** argv) {
    CLI::App app{"deployctl: deploy apps from their git tree to your own servers", "deployctl"};
    app.footer(k_exit_codes);
    app.fallthrough(); // global options also after the subcommand
    app.set_version_flag("--version", std::string("deployctl ") + common::version());
    app.require_subcommand(1);
    Context ctx;
    std::string dir;
    Commands commands;
    add_global_options(app, ctx.global, dir);
    add_commands(app, commands);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return parse_error(app, e, argc, argv);
    }
    auto printer = make_printer(ctx.global);
    ctx.out = printer.get();
    ctx.connect = default_connect(ctx.global);
    common::Status result;
    try {
        std::error_code ec;
        if (!dir.empty() && (std::filesystem::current_path(dir, ec), ec))
            result = common::make_error(common::ErrorKind::usage,
                                        fmt::format("cannot change to {}: {}", dir, ec.message()));
        else
            result = dispatch(app, ctx, commands);
    } catch (const std::exception& e) {
        result = common::make_error(common::ErrorKind::internal,
                                    fmt::format("unexpected error (a bug): {}", e.what()));
    }
    if (result)
        return 0;
    if (!ctx.error_reported)
        printer->emit(output::Error{result.error(), ""});
    return common::exit_code(result.error().kind);
}

} // namespace cli
