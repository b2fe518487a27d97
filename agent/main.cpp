// deploy-agent: the daemon on each server (docs/design.md §2). The work lives in
// agent_core; this file is the command line.

#include <CLI/CLI.hpp>
#include <agent/api/dial_stdio.hpp>
#include <agent/api/serve.hpp>
#include <agent/api/unix_socket.hpp>
#include <agent/auth/bootstrap.hpp>
#include <agent/config.hpp>
#include <agent/deploy/down.hpp>
#include <agent/git/keys.hpp>
#include <agent/git/push_client.hpp>
#include <agent/runtime/log_redact.hpp>
#include <common/version.hpp>

#include <cstdio>
#include <filesystem>
#include <string>
#include <sys/stat.h>

namespace {

constexpr const char* k_default_config = "/etc/deploy-agent/agent.toml";

// Fills what the command line left unset from agent.toml: `--config PATH`, or
// the default file when it exists. Returns an exit code, or -1 to go on.
int apply_config_file(const CLI::App& serve, const std::string& flag_path,
                      agent::api::ServeOptions& options) {
    std::string path = flag_path;
    std::error_code ec;
    if (path.empty() && std::filesystem::exists(k_default_config, ec))
        path = k_default_config;
    if (path.empty())
        return -1;
    auto config = agent::load_agent_config(path);
    if (!config) {
        std::fprintf(stderr, "deploy-agent: %s\n", config.error().message.c_str());
        return 2;
    }
    auto fill = [&serve](const char* flag, const std::optional<std::string>& value,
                         std::string& target) {
        if (value && serve.count(flag) == 0)
            target = *value;
    };
    fill("--data-dir", config->data_dir, options.data_dir);
    fill("--listen", config->listen, options.listen);
    fill("--socket", config->socket, options.socket);
    fill("--engine", config->engine, options.engine);
    fill("--engine-bin", config->engine_bin, options.engine_bin);
    fill("--container-network", config->container_network, options.container_network);
    fill("--cgroup-root", config->cgroup_root, options.cgroup_root);
    fill("--proxy-bin", config->proxy_bin, options.proxy_bin);
    fill("--proxy-listen", config->proxy_listen, options.proxy.listen);
    fill("--metrics-listen", config->metrics_listen, options.metrics_listen);
    if (config->failed_logins_per_minute && serve.count("--failed-logins-per-minute") == 0)
        options.failed_logins_per_minute = *config->failed_logins_per_minute;
    fill("--min-free", config->min_free, options.min_free);
    fill("--git-fetch-timeout", config->git_fetch_timeout, options.git_fetch_timeout);
    fill("--app-ports", config->app_ports, options.app_ports);
    if (config->max_runs_per_app && serve.count("--max-runs-per-app") == 0)
        options.max_runs_per_app = *config->max_runs_per_app;
    if (config->proxy_threads && serve.count("--proxy-threads") == 0)
        options.proxy.threads = static_cast<unsigned>(*config->proxy_threads);
    if (config->tls && serve.count("--tls-cert") == 0)
        options.tls = config->tls; // the flags replace the pair as a whole
    if (config->proxy_https_listen)
        options.proxy.https_listen = *config->proxy_https_listen;
    options.proxy.redirect_https = config->redirect_https.value_or(false);
    options.proxy.access_log = config->access_log.value_or(true);
    if (config->access_log_max_size)
        options.proxy.access_log_max_size = *config->access_log_max_size;
    options.proxy.certificates = config->certificates;
    if (config->acme) {
        auto& acme = options.proxy.acme;
        const auto& from = *config->acme;
        acme.enabled = true;
        acme.directory = from.directory.value_or(acme.directory);
        acme.ca_file = from.ca_file.value_or("");
        acme.email = from.email.value_or("");
        acme.eab_kid = from.eab_kid.value_or("");
        acme.eab_hmac_key = from.eab_hmac_key.value_or("");
        acme.challenges = from.challenges.value_or(acme.challenges);
        acme.dns_hook = from.dns_hook.value_or("");
        acme.on_demand = from.on_demand.value_or(false);
        acme.ask = from.ask.value_or("");
        if (from.retry)
            acme.retry = std::chrono::duration_cast<std::chrono::seconds>(*from.retry);
    }
    return -1;
}

// deploy-agent keys add|ls|rm: the push user's authorized_keys (docs/git.md).
CLI::App* add_keys_commands(CLI::App& app, agent::git::KeysCommand& o) {
    auto* keys = app.add_subcommand(
        "keys", "Manage the SSH keys that may git push to this agent: lines of the push user's "
                "authorized_keys whose forced command is deploy-agent git-receive (docs/git.md)");
    keys->require_subcommand(1);
    const auto where = [&o](CLI::App* command) {
        command->add_option("--user", o.user, "The push user: its ~/.ssh/authorized_keys")
            ->capture_default_str();
        command->add_option("--file", o.file, "This authorized_keys file instead of the user's");
    };
    auto* add = keys->add_subcommand(
        "add", "Let a public key git push, to some apps or to all (the key is read from "
               "--key-file, else stdin)");
    add->add_option("NAME", o.name,
                    "The key's name: in keys ls, in the audit log and in the "
                    "pusher's messages")
        ->required();
    auto* app_flag = add->add_option("--app", o.apps, "An app the key may push to (repeat it)");
    auto* all_flag = add->add_flag("--all-apps", o.all_apps, "The key may push to every app");
    app_flag->excludes(all_flag);
    add->add_option("--key-file", o.key_file, "The public key (a .pub file); - or none: stdin");
    add->add_option("--socket", o.socket,
                    "The agent's socket, when serve uses another than the default");
    where(add);
    add->footer("Examples:\n  deploy-agent keys add alice --app hello < alice.pub\n  "
                "deploy-agent keys add ci --all-apps --key-file ci.pub\n\nThen: git push "
                "ssh://deploy@SERVER/hello main");
    auto* ls = keys->add_subcommand("ls", "List the push keys: name, fingerprint, apps");
    ls->add_flag("--json", o.json, "One JSON object per key and line");
    where(ls);
    auto* rm = keys->add_subcommand("rm", "Remove a push key: it can no longer push");
    rm->add_option("NAME", o.name, "The key's name (keys ls)")->required();
    where(rm);
    return keys;
}

// deploy-agent token create|ls|revoke: straight on DATA_DIR/state.db.
CLI::App* add_token_commands(CLI::App& app, agent::auth::TokenCommand& o) {
    auto* token = app.add_subcommand(
        "token", "Manage the bearer tokens of the HTTP API (docs/security.md); works on the data "
                 "dir directly, also while the agent runs");
    token->require_subcommand(1);
    auto* create = token->add_subcommand(
        "create", "Create a token and print it once, alone on stdout (T=$(deploy-agent token "
                  "create ...))");
    auto* app_flag = create->add_option("--app", o.app, "The one app the token may act on");
    auto* all_flag = create->add_flag("--all-apps", o.all_apps, "The token may act on every app");
    app_flag->excludes(all_flag);
    create->add_option("--scope", o.scope, "read < deploy < admin (each includes the lower)")
        ->required()
        ->check(CLI::IsMember({"read", "deploy", "admin"}));
    create->add_option("--expires", o.expires, "Lifetime, e.g. 30d or 12h (default: never)");
    create->add_option("--name", o.name, "A description shown by token ls and the audit log");
    create->footer("Examples:\n  T=$(deploy-agent token create --app hello --scope deploy "
                   "--name ci --expires 90d)\n  deploy-agent token create --all-apps --scope read");
    auto* ls = token->add_subcommand("ls", "List the tokens (never their secrets)");
    ls->add_flag("--json", o.json, "One JSON object per token and line");
    auto* revoke = token->add_subcommand("revoke", "Revoke a token: refused from the next request");
    revoke->add_option("ID", o.id, "The token's id (token ls)")->required();
    for (auto* sub : {create, ls, revoke})
        sub->add_option("--data-dir", o.data_dir, "The agent's data dir")->capture_default_str();
    return token;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "deploy-agent: builds, runs and routes the releases deployctl sends to this server.\n"
        "The HTTP API is described in docs/api.md."};
    app.require_subcommand(1);

    agent::api::ServeOptions options;
    agent::proxy::CertificateFiles tls_files;
    std::string config_path;
    auto* serve =
        app.add_subcommand("serve", "Run the agent: HTTP API, deployments, and deploy-proxy");
    serve->footer("The API on TCP needs a bearer token (docs/security.md): on its first start the "
                  "agent writes an admin token for all apps to DATA_DIR/admin.token (mode 0600). "
                  "The unix socket needs none.");
    serve
        ->add_option("--config", config_path,
                     std::string("agent.toml with these settings and the proxy's HTTPS "
                                 "certificates (docs/agent-config.md); flags given here win. "
                                 "Default: ") +
                         k_default_config + " when it exists")
        ->check(CLI::ExistingFile);
    serve->add_option("--data-dir", options.data_dir, "State, blobs, releases and logs live here")
        ->capture_default_str();
    serve
        ->add_option("--listen", options.listen,
                     "Address of the HTTP API (HOST:PORT; keep it on 127.0.0.1 and reach it "
                     "through SSH, or serve HTTPS with --tls-cert/--tls-key: an address other "
                     "than loopback needs them)")
        ->capture_default_str();
    auto* tls_cert =
        serve->add_option("--tls-cert", tls_files.cert,
                          "Serve the API over HTTPS (TLS 1.2+) with this PEM "
                          "certificate (chain); reloaded when the file changes or on SIGHUP");
    auto* tls_key = serve->add_option("--tls-key", tls_files.key,
                                      "The certificate's private key (PEM, no passphrase)");
    tls_cert->needs(tls_key);
    tls_key->needs(tls_cert);
    serve
        ->add_option("--proxy-listen", options.proxy.listen,
                     "Where deploy-proxy serves the apps (HOST:PORT)")
        ->capture_default_str();
    serve
        ->add_option("--engine", options.engine,
                     "How releases are built and run: docker or podman (a release with a "
                     "Dockerfile is built into an image and runs as a container; others run as "
                     "processes), process (plain processes only), or auto (docker when a Docker "
                     "engine answers, else process)")
        ->check(CLI::IsMember({"auto", "docker", "podman", "process"}))
        ->capture_default_str();
    serve->add_option("--engine-bin", options.engine_bin,
                      "The docker or podman CLI to drive (default: found on PATH)");
    serve
        ->add_option("--container-network", options.container_network,
                     "Network of app containers (docker run --network); with host networking "
                     "the app listens on 127.0.0.1:$PORT, with any other the agent publishes "
                     "$PORT on 127.0.0.1")
        ->capture_default_str();
    serve
        ->add_option("--cgroup-root", options.cgroup_root,
                     "Where the cgroup file systems are mounted: cgroup v2, or v1's memory, cpu "
                     "and pids hierarchies. The process engine applies [run] memory, cpus and "
                     "pids and [build] memory through them (a cgroup per app process, build and "
                     "one-off); without a writable controller, deployments asking for its limit "
                     "are refused")
        ->capture_default_str();
    serve->add_option("--metrics-listen", options.metrics_listen,
                      "Serve GET /metrics (Prometheus text format, no token: keep it on "
                      "127.0.0.1 or a private address) on this HOST:PORT: deployments, "
                      "releases by state, build slots, deploy-proxy's requests, connections "
                      "and workers, log drains, ACME certificates (docs/metrics.md); off by "
                      "default");
    serve
        ->add_option("--proxy-threads", options.proxy.threads,
                     "deploy-proxy's workers, each an event loop on a thread of its own; 0: one "
                     "per CPU this agent may use (its affinity mask, lowered by its cgroup's CPU "
                     "quota: cpu.max on cgroup v2, cpu.cfs_quota_us on v1)")
        ->check(CLI::Range(0, 1024))
        ->capture_default_str();
    serve->add_option("--proxy-bin", options.proxy_bin,
                      "Path of the deploy-proxy binary (default: beside deploy-agent)");
    serve
        ->add_option("--socket", options.socket,
                     "Also serve the API on this unix socket, for local users and for deployctl "
                     "over SSH (sshd connects to it, or dial-stdio does); its directory is created "
                     "0750 if missing, the "
                     "socket is 0660. \"\" disables it")
        ->capture_default_str();
    serve
        ->add_option("--failed-logins-per-minute", options.failed_logins_per_minute,
                     "Failed token checks within a minute from one TCP address after which that "
                     "address gets 429 with Retry-After for 60 s, doubling for each repeated "
                     "offence up to 1 h, whatever token it sends (docs/security.md); 0 never "
                     "refuses. Failed logins are logged and audited once per address and minute "
                     "either way")
        ->check(CLI::Range(0, 1000000))
        ->capture_default_str();
    serve->add_option("--min-free", options.min_free,
                      "Space kept free on the data dir's disk: a size (1g, 512m), a share (5%) "
                      "or 0. An upload or a build that would eat into it is refused up front "
                      "(deployctl exits 6). Default: the smaller of 1g and 5%");
    serve
        ->add_option("--app-ports", options.app_ports,
                     "The ports apps are given ($PORT), LOW-HIGH: keep it outside the kernel's "
                     "range for outgoing connections (net.ipv4.ip_local_port_range)")
        ->capture_default_str();
    serve
        ->add_option("--git-fetch-timeout", options.git_fetch_timeout,
                     "How long a webhook's fetch of the pushed branch may take (a duration); "
                     "past it the delivery is answered 504 and the app's next ones 503 until "
                     "the fetch ends (docs/git.md)")
        ->capture_default_str();
    serve
        ->add_option("--max-runs-per-app", options.max_runs_per_app,
                     "Commands of one app that deployctl run may run at once; the next is "
                     "refused (deployctl exits 5). 0 turns deployctl run off")
        ->check(CLI::Range(0, 10000))
        ->capture_default_str();

    std::string dial_socket = agent::api::k_default_socket;
    auto* dial = app.add_subcommand(
        "dial-stdio", "Bridge stdin and stdout to the agent's unix socket (deployctl runs this "
                      "over SSH for ssh:// hosts whose sshd refuses it a channel to the socket)");
    dial->add_option("--socket", dial_socket, "The socket of deploy-agent serve")
        ->capture_default_str();

    agent::git::ReceiveOptions receive_options;
    receive_options.socket = agent::api::k_default_socket;
    auto* receive = app.add_subcommand(
        "git-receive", "Serve git push over SSH: the forced command of a push key (deploy-agent "
                       "keys add writes it); relays git to the agent, which deploys the pushed "
                       "branch (docs/git.md)");
    receive->add_option("--key", receive_options.key, "The key's name");
    receive->add_option("--app", receive_options.apps,
                        "An app the key may push to (repeat it; "
                        "none: every app)");
    receive->add_option("--socket", receive_options.socket, "The socket of deploy-agent serve")
        ->capture_default_str();
    auto* hook = app.add_subcommand(
        "git-hook", "(internal) The pre-receive hook of a push: asks the agent to deploy it");
    hook->group("");
    std::string hook_name;
    hook->add_option("HOOK", hook_name, "pre-receive")
        ->required()
        ->check(CLI::IsMember({"pre-receive"}));

    agent::DownOptions down_options;
    auto* down = app.add_subcommand(
        "down", "Stop the agent running on a data dir and everything it started: its "
                "deploy-proxy, app processes, log-redact writers, builds and the containers "
                "labelled with its id (for a local try; releases stay, serve starts them again)");
    down->add_option("--data-dir", down_options.data_dir, "The data dir of deploy-agent serve")
        ->required();
    down->add_option("--engine-bin", down_options.engine_bin,
                     "The docker or podman CLI whose containers to remove (default: both tried, "
                     "on PATH)");
    down->footer("Examples:\n  deploy-agent down --data-dir /tmp/agent\n\nIdempotent: says so and "
                 "exits 0 when nothing runs.");

    auto* redact = app.add_subcommand(
        "log-redact", "(internal) Copy an app's output to its log with its secrets replaced by "
                      "[redacted]; the agent starts it with the output on fd 3 and the secret "
                      "values on fd 4");
    redact->group(""); // not for users: hidden from --help
    agent::runtime::LogWriterOptions writer_options;
    redact->add_option("--file", writer_options.file, "The log to append to (default: stdout)");
    redact->add_option("--max-size", writer_options.max_size,
                       "Rotate the log past this many bytes");
    redact->add_option("--keep", writer_options.keep, "Compressed rotated logs to keep");
    agent::auth::TokenCommand token_options;
    auto* token = add_token_commands(app, token_options);
    agent::git::KeysCommand keys_options;
    auto* keys = add_keys_commands(app, keys_options);

    auto* version = app.add_subcommand("version", "Print the version");
    version->callback([] { std::printf("deploy-agent %s\n", common::version()); });

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        // --help and --version print and succeed; usage errors exit 2 (docs/design.md §6).
        return app.exit(error) == 0 ? 0 : 2;
    }
    if (*serve) {
        if (!tls_files.cert.empty())
            options.tls = tls_files;
        if (int code = apply_config_file(*serve, config_path, options); code >= 0)
            return code;
        options.socket_is_default =
            options.socket == agent::api::k_default_socket && serve->count("--socket") == 0;
        return agent::api::serve(options);
    }
    if (*dial)
        return agent::api::dial_stdio(dial_socket);
    if (*receive)
        return agent::git::git_receive(receive_options);
    if (*hook)
        return agent::git::git_hook_pre_receive();
    if (*keys) {
        if (keys->got_subcommand("add"))
            return agent::git::keys_add(keys_options);
        if (keys->got_subcommand("ls"))
            return agent::git::keys_list(keys_options);
        return agent::git::keys_remove(keys_options);
    }
    if (*down)
        return agent::down(down_options);
    if (*redact)
        return agent::runtime::log_redact_main(writer_options);
    if (*token) {
        ::umask(077); // state.db, when it creates it, is the agent's alone
        if (token->got_subcommand("create"))
            return agent::auth::token_create(token_options);
        if (token->got_subcommand("ls"))
            return agent::auth::token_list(token_options);
        return agent::auth::token_revoke(token_options);
    }
    return 0;
}
