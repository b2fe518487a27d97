// The deployctl command line: the global options, the commands of cli/commands/ (in the
// order of k_commands), the printer and how to reach an agent; the one place errors
// become exit codes.

#include <CLI/CLI.hpp>
#include <cli/app.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/credentials.hpp>
#include <cli/transport/http_client.hpp>
#include <cli/transport/ssh_client.hpp>
#include <cli/transport/ssh_config.hpp>
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
  6  the agent's disk is full (free space on it: deployctl agent df, agent prune)

Agents: --host URL, else $DEPLOYCTL_HOST, else the hosts of the target in deploy.toml
(-t NAME, the only target, or "production"). URLs: https://HOST:PORT (the certificate is
checked against the system's CA store, the target's ca_file, or its pinned fingerprint;
--ca-file / --fingerprint override them), or http://127.0.0.1:PORT for an agent on this
machine (plain HTTP only to loopback), or ssh://USER@HOST[:PORT]: deployctl reads ~/.ssh/config
(Host aliases, HostName, User, Port, IdentityFile, ProxyJump, ...; -F FILE or
$DEPLOYCTL_SSH_CONFIG for another), logs in with ssh-agent or ~/.ssh/id_* (or the target's
identity_file), checks the host key against ~/.ssh/known_hosts and runs
`deploy-agent dial-stdio` (or the target's agent_command) on the server.
Tokens: the line "URL TOKEN" for the agent in ~/.config/deployctl/credentials (mode 0600),
else $DEPLOYCTL_TOKEN, is sent as a bearer token to https:// and http:// agents (an agent's
first admin token is in its DATA_DIR/admin.token).)";

void add_global_options(CLI::App& app, GlobalOptions& g, std::string& dir) {
    app.add_option("-C", dir, "Run as if deployctl was started in DIR")->type_name("DIR");
    app.add_option("-t,--target", g.target, "Deploy target from deploy.toml [targets.NAME]")
        ->type_name("NAME");
    app.add_option("--host", g.hosts, "Agent URL (repeatable); overrides deploy.toml")
        ->type_name("URL")
        ->allow_extra_args(false) // one URL per --host: `--host URL DIR` keeps DIR
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    app.add_option("-a,--app", g.app, "App name (default: app in deploy.toml)")->type_name("NAME");
    app.add_flag("--json", g.json,
                 "Print NDJSON events, one object per line; releases and token ls: one array per "
                 "agent (docs/json.md)");
    app.add_flag("-q,--quiet", g.quiet, "Print only errors and the final URL");
    app.add_flag("--no-color", g.no_color, "No colours (also when NO_COLOR is set)");
    app.add_flag("--accept-new-host-key", g.accept_new_host_key,
                 "ssh:// hosts: trust and record a server's host key the first time it is seen "
                 "(a changed key is still refused)");
    app.add_option("-F,--ssh-config", g.ssh_config,
                   "ssh:// hosts: read this ssh config instead of ~/.ssh/config and "
                   "/etc/ssh/ssh_config (\"none\": none; also $DEPLOYCTL_SSH_CONFIG)")
        ->type_name("FILE");
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
    return [options, accept_new = g.accept_new_host_key,
            ssh_config = transport::ssh_config_source(g.ssh_config)](
               const HostUrl& url, const SshSettings& ssh, const transport::TlsOptions& tls)
               -> common::Result<std::unique_ptr<transport::Client>> {
        if (url.scheme != Scheme::ssh) {
            auto token = token_for(url.base_url); // over SSH the socket needs none
            if (!token)
                return token.error();
            auto http = options;
            http.token = token->value;
            http.token_source = token->source;
            if (url.scheme == Scheme::https) {
                http.tls = tls;
                // Nothing says how to check it: the credentials file's pin, when it has one.
                if (tls.fingerprint.empty() && tls.ca_file.empty() && !token->fingerprint.empty()) {
                    http.tls.fingerprint = token->fingerprint;
                    http.tls.pinned_by = credentials_path().string();
                }
            }
            return transport::make_http_client(url.base_url, std::move(http));
        }
        transport::SshOptions ssh_options;
        ssh_options.user = url.user;
        ssh_options.host = url.host;
        ssh_options.port = url.port; // 0: the ssh config's Port, else 22
        ssh_options.agent_command = ssh.agent_command;
        ssh_options.agent_socket = ssh.agent_socket;
        ssh_options.identity_file = ssh.identity_file;
        ssh_options.accept_new_host_key = accept_new;
        if (auto ok = transport::apply_ssh_config(ssh_options, ssh_config); !ok)
            return ok.error();
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
    add_global_options(app, ctx.global, dir);
    for (auto add : commands::k_commands)
        add(app, ctx);
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
            result = ctx.command(); // set by the parse: one subcommand is required
    } catch (const std::exception& e) {
        result = common::make_error(common::ErrorKind::internal,
                                    fmt::format("unexpected error (a bug): {}", e.what()));
    }
    if (result)
        return ctx.exit_code.value_or(0);
    if (!ctx.error_reported)
        printer->emit(output::Error{result.error(), ""});
    return common::exit_code(result.error().kind);
}

} // namespace cli
