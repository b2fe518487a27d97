// deployctl agent ping | info | version | df | prune: is the agent there, what it runs,
// which version, what its data takes on disk, and the collection of unused blobs.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/target.hpp>
#include <common/version.hpp>

#include <nlohmann/json.hpp>

#include <memory>

namespace cli::commands {

namespace {

using output::AgentQuery;

// deployctl's version, then each agent's, with a warning for each that differs.
common::Status versions(Context& ctx, const Target& target) {
    const std::string mine(common::version());
    ctx.out->emit(output::Version{mine});
    return for_each_host(ctx, target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             TRY_ASSIGN(auto answer, client.get_json("/v1/health"));
                             auto theirs = answer.value("version", "");
                             ctx.out->emit(output::Version{theirs, host});
                             if (theirs != mine)
                                 ctx.out->emit(output::Warning{host + " runs deploy-agent " +
                                                               theirs + ", deployctl is " + mine +
                                                               ": upgrade one of them to match"});
                             return {};
                         });
}

struct AgentOptions {
    bool version = false;
    bool dry_run = false; // prune
};

common::Result<nlohmann::json> ask(transport::Client& client, AgentQuery query,
                                   const AgentOptions& options) {
    switch (query) {
    case AgentQuery::info:
        return client.get_json("/v1/info");
    case AgentQuery::disk:
        return client.get_json("/v1/disk");
    case AgentQuery::prune:
        return client.post_json("/v1/prune", {{"dry_run", options.dry_run}});
    case AgentQuery::ping:
        break;
    }
    return client.get_json("/v1/health");
}

common::Status agent(Context& ctx, AgentQuery query, const AgentOptions& options) {
    auto target = resolve_target(ctx, ".", ConfigNeed::hosts_only);
    if (!target)
        return target.error();
    if (options.version)
        return versions(ctx, *target);
    return for_each_host(ctx, *target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             auto answer = ask(client, query, options);
                             if (!answer)
                                 return answer.error();
                             ctx.out->emit(output::Agent{host, query, *answer});
                             return {};
                         });
}

} // namespace

void add_agent(CLI::App& app, Context& ctx) {
    auto options = std::make_shared<AgentOptions>();
    auto select = [&ctx, options](AgentQuery query, bool version = false) {
        return [&ctx, options, query, version] {
            options->version = version;
            ctx.command = [&ctx, options, query] { return agent(ctx, query, *options); };
        };
    };
    auto* cmd = app.add_subcommand("agent", "Ask the agents: ping, info (version, engine, "
                                            "apps), version, df (disk use) or prune (unused "
                                            "blobs); install or upgrade one on a server over "
                                            "SSH");
    cmd->require_subcommand(1);
    cmd->add_subcommand("ping", "Check that every agent answers (exit 3 if one does not)")
        ->callback(select(AgentQuery::ping));
    cmd->add_subcommand("info", "Show each agent's version, engine (docker, podman or "
                                "process), proxy address, data dir and apps")
        ->callback(select(AgentQuery::info));
    cmd->add_subcommand("version", "Print deployctl's version and each agent's, with a warning "
                                   "for each agent whose version differs")
        ->callback(select(AgentQuery::ping, true));
    cmd->add_subcommand("df", "Show what the agent's data takes on disk: per app the release "
                              "trees, the blobs its kept releases use and its logs; all blobs "
                              "and those no release uses; the free space and the reserve "
                              "(deploy-agent --min-free) below which deploys are refused")
        ->callback(select(AgentQuery::disk));
    auto* prune = cmd->add_subcommand(
        "prune", "Remove the blobs no kept release uses and no deploy in progress is about to "
                 "use (the agent also does it after each deploy and every 10 minutes)");
    prune->add_flag("--dry-run", options->dry_run, "List what would go; remove nothing");
    prune->callback(select(AgentQuery::prune));
    add_agent_install(*cmd, ctx);
    cmd->footer("Examples:\n  deployctl agent ping --host http://127.0.0.1:7070\n"
                "  deployctl agent info\n  deployctl agent info --json | jq -r .engine\n"
                "  deployctl agent version -t production\n  deployctl agent df\n"
                "  deployctl agent prune --dry-run\n"
                "  deployctl agent install ssh://root@web1 --package deploy-agent_0.9.0_amd64.deb\n"
                "  deployctl agent upgrade ssh://web1 --package deploy-agent_0.9.1_amd64.deb\n");
}

} // namespace cli::commands
