// deployctl agent ping | info | version: is the agent there, what it runs, which version.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/target.hpp>
#include <common/version.hpp>

#include <nlohmann/json.hpp>

namespace cli::commands {

namespace {

enum class AgentQuery { ping, info, version };

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
                                 ctx.out->emit(output::Warning{
                                     host + " runs deploy-agent " + theirs + ", deployctl is " +
                                     mine + ": upgrade one of them to match"});
                             return {};
                         });
}

common::Status agent(Context& ctx, AgentQuery query) {
    auto target = resolve_target(ctx, ".", ConfigNeed::hosts_only);
    if (!target)
        return target.error();
    if (query == AgentQuery::version)
        return versions(ctx, *target);
    const bool info = query == AgentQuery::info;
    return for_each_host(ctx, *target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             auto answer = client.get_json(info ? "/v1/info" : "/v1/health");
                             if (!answer)
                                 return answer.error();
                             ctx.out->emit(output::Agent{host, info, *answer});
                             return {};
                         });
}

} // namespace

void add_agent(CLI::App& app, Context& ctx) {
    auto select = [&ctx](AgentQuery query) {
        return [&ctx, query] { ctx.command = [&ctx, query] { return agent(ctx, query); }; };
    };
    auto* cmd = app.add_subcommand("agent", "Ask the agents: ping, info (version, engine, "
                                            "apps) or version");
    cmd->require_subcommand(1);
    cmd->add_subcommand("ping", "Check that every agent answers (exit 3 if one does not)")
        ->callback(select(AgentQuery::ping));
    cmd->add_subcommand("info", "Show each agent's version, engine (docker, podman or "
                                "process), proxy address, data dir and apps")
        ->callback(select(AgentQuery::info));
    cmd->add_subcommand("version", "Print deployctl's version and each agent's, with a warning "
                                   "for each agent whose version differs")
        ->callback(select(AgentQuery::version));
    cmd->footer("Examples:\n  deployctl agent ping --host http://127.0.0.1:7070\n"
                "  deployctl agent info\n  deployctl agent info --json | jq -r .engine\n"
                "  deployctl agent version -t production\n");
}

} // namespace cli::commands
