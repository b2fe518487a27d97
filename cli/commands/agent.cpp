// deployctl agent ping | info: is the agent there, and what it runs.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

namespace cli::commands {

namespace {

enum class AgentQuery { ping, info };

common::Status agent(Context& ctx, AgentQuery query) {
    auto target = resolve_target(ctx, ".", ConfigNeed::hosts_only);
    if (!target)
        return target.error();
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
    auto* cmd = app.add_subcommand("agent", "Ask the agents: ping, or info (version, engine, "
                                            "apps)");
    cmd->require_subcommand(1);
    cmd->add_subcommand("ping", "Check that every agent answers (exit 3 if one does not)")
        ->callback(select(AgentQuery::ping));
    cmd->add_subcommand("info", "Show each agent's version, engine (docker, podman or "
                                "process), proxy address, data dir and apps")
        ->callback(select(AgentQuery::info));
    cmd->footer("Examples:\n  deployctl agent ping --host http://127.0.0.1:7070\n"
                "  deployctl agent info\n  deployctl agent info --json | jq -r .engine\n");
}

} // namespace cli::commands
