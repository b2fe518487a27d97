// deployctl login URL: checks a token (read from stdin) against that agent and
// stores it as the agent's line in the credentials file (docs/security.md).

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/credentials.hpp>
#include <cli/secret_input.hpp>
#include <cli/target.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <memory>

namespace cli::commands {

namespace {

using common::ErrorKind;
using common::make_error;

common::Status login(Context& ctx, const std::string& url_text) {
    auto url = parse_host_url(url_text);
    if (!url)
        return url.error();
    if (url->scheme == Scheme::ssh)
        return make_error(ErrorKind::usage,
                          fmt::format("{} is an ssh:// agent: it needs no token (deployctl logs "
                                      "in with ssh)",
                                      url_text));
    if (auto ok = check_transport(*url); !ok)
        return ok.error();
    auto tls = command_line_tls(ctx.global);
    if (!tls)
        return tls.error();
    auto token = read_secret(fmt::format("Token for {} (not shown): ", url->base_url), "token");
    if (!token)
        return token.error();
    transport::HttpOptions options;
    options.token = *token;
    options.token_source = TokenSource::given;
    if (url->scheme == Scheme::https)
        options.tls = *tls;
    // GET /v1/apps needs the read scope on any app: every token has it.
    auto client = transport::make_http_client(url->base_url, std::move(options));
    if (auto check = client->get_json("/v1/apps"); !check)
        return check.error();
    const auto file = credentials_path();
    auto replaced = store_credentials(file, url->base_url, *token);
    if (!replaced)
        return replaced.error();
    ctx.out->emit(output::LoggedIn{url->base_url, file.string(), *replaced});
    return {};
}

} // namespace

void add_login(CLI::App& app, Context& ctx) {
    auto url = std::make_shared<std::string>();
    auto* cmd = app.add_subcommand(
        "login", "Check a token (from stdin) against an agent and store it for that agent in "
                 "~/.config/deployctl/credentials");
    cmd->add_option("URL", *url, "The agent's URL (https://HOST:PORT or http://127.0.0.1:PORT)")
        ->required();
    cmd->footer("The token is read from stdin (typed without echo on a terminal) and stored only "
                "when the agent accepts it; the file's line for an agent wins over "
                "DEPLOYCTL_TOKEN. An https:// agent's certificate is checked against the "
                "system's CAs, or --ca-file / --fingerprint.\n\nExamples:\n  deployctl login "
                "https://web2:7443\n  ssh web2 "
                "sudo cat /var/lib/deploy-agent/admin.token | deployctl login "
                "https://web2:7443\n");
    cmd->callback([&ctx, url] { ctx.command = [&ctx, url] { return login(ctx, *url); }; });
}

} // namespace cli::commands
