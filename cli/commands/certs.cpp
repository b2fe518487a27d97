// deployctl certs: the certificates each agent of the target gets from its
// ACME server ([acme] in agent.toml, docs/tls.md): names, issuer, expiry, the
// last renewal, the next attempt and the last error.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

namespace cli::commands {

namespace {

common::Status certs(Context& ctx) {
    auto target = resolve_target(ctx, ".", ConfigNeed::hosts_only);
    if (!target)
        return target.error();
    return for_each_host(ctx, *target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             auto answer = client.get_json("/v1/certificates");
                             if (!answer)
                                 return answer.error();
                             ctx.out->emit(output::Certificates{host, *answer});
                             return {};
                         });
}

} // namespace

void add_certs(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("certs", "The TLS certificates the agents get by themselves "
                                            "from their ACME server ([acme], docs/tls.md)");
    cmd->callback([&ctx] { ctx.command = [&ctx] { return certs(ctx); }; });
    cmd->footer(
        "Examples:\n  deployctl certs\n  deployctl certs --host ssh://deploy@web1 --json\n\n"
        "Every domain the agent routes gets a certificate when its agent.toml has [acme]\n"
        "(and, with on_demand, every name its ask URL allows). Each row shows the name, its\n"
        "state (valid, pending, failed, expired, renewal failing, unused), the issuer, the\n"
        "expiry, the last renewal, the next attempt and the last error. A name without a\n"
        "certificate is served over plain HTTP until one is issued.\n");
}

} // namespace cli::commands
