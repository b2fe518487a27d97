// deploy-agent: the daemon on each server (DESIGN §3). The work lives in
// agent_core; this file is the command line.

#include <CLI/CLI.hpp>
#include <agent/api/dial_stdio.hpp>
#include <agent/api/serve.hpp>
#include <agent/api/unix_socket.hpp>
#include <agent/config.hpp>
#include <agent/runtime/log_redact.hpp>
#include <common/version.hpp>

#include <cstdio>
#include <filesystem>
#include <string>

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
    fill("--proxy-bin", config->proxy_bin, options.proxy_bin);
    fill("--proxy-listen", config->proxy_listen, options.proxy.listen);
    if (config->tls && serve.count("--tls-cert") == 0)
        options.tls = config->tls; // the flags replace the pair as a whole
    if (config->proxy_https_listen)
        options.proxy.https_listen = *config->proxy_https_listen;
    options.proxy.redirect_https = config->redirect_https.value_or(false);
    options.proxy.certificates = config->certificates;
    return -1;
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
    serve->add_option("--config", config_path,
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
    serve->add_option("--proxy-bin", options.proxy_bin,
                      "Path of the deploy-proxy binary (default: beside deploy-agent)");
    serve
        ->add_option("--socket", options.socket,
                     "Also serve the API on this unix socket, for local users and for deployctl "
                     "over SSH (dial-stdio); its directory is created 0750 if missing, the "
                     "socket is 0660. \"\" disables it")
        ->capture_default_str();

    std::string dial_socket = agent::api::k_default_socket;
    auto* dial = app.add_subcommand(
        "dial-stdio", "Bridge stdin and stdout to the agent's unix socket (deployctl runs this "
                      "over SSH for ssh:// hosts)");
    dial->add_option("--socket", dial_socket, "The socket of deploy-agent serve")
        ->capture_default_str();

    auto* redact = app.add_subcommand(
        "log-redact", "(internal) Copy an app's output to its log with its secrets replaced by "
                      "[redacted]; the agent starts it with the output on fd 3 and the secret "
                      "values on fd 4");
    redact->group(""); // not for users: hidden from --help

    auto* version = app.add_subcommand("version", "Print the version");
    version->callback([] { std::printf("deploy-agent %s\n", common::version()); });

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        // --help and --version print and succeed; usage errors exit 2 (DESIGN §4).
        return app.exit(error) == 0 ? 0 : 2;
    }
    if (*serve) {
        if (!tls_files.cert.empty())
            options.tls = tls_files;
        if (int code = apply_config_file(*serve, config_path, options); code >= 0)
            return code;
        options.socket_is_default = options.socket == agent::api::k_default_socket &&
                                    serve->count("--socket") == 0;
        return agent::api::serve(options);
    }
    if (*dial)
        return agent::api::dial_stdio(dial_socket);
    if (*redact)
        return agent::runtime::log_redact_main();
    return 0;
}
