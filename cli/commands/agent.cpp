// deployctl agent ping | info: is the agent there, and what it runs.

#include <cli/commands/commands.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

namespace cli::commands {

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

} // namespace cli::commands
