// deployctl scale [PROCESS=COUNT...]: instances per process on each host
// (docs/processes.md "Instances"); without a count, the counts in force.

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/fleet.hpp>
#include <cli/target.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <memory>

namespace cli::commands {

namespace {

// deploy-proxy balances over at most 64 upstreams per route.
constexpr int k_max_instances = 64;

// "web=3" → {"web", 3}; a usage error that says what is wrong otherwise.
common::Result<std::pair<std::string, int>> parse_count(const std::string& arg) {
    const auto eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    auto usage = [&](const std::string& why) {
        return common::make_error(
            common::ErrorKind::usage,
            fmt::format("scale {}: {} (expected PROCESS=COUNT, e.g. web=2)", arg, why));
    };
    if (eq == std::string::npos)
        return usage("no count");
    if (name.empty() || name.size() > 30 ||
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos ||
        !(name[0] >= 'a' && name[0] <= 'z'))
        return usage("a process name is 1-30 of a-z 0-9 -, starting with a letter");
    const std::string text = arg.substr(eq + 1);
    int count = -1;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), count);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || count < 0 ||
        count > k_max_instances)
        return usage(fmt::format("the count is a whole number from 0 to {}", k_max_instances));
    return std::pair{name, count};
}

common::Status scale(Context& ctx, const std::vector<std::string>& args) {
    nlohmann::json counts = nlohmann::json::object();
    for (const auto& arg : args) {
        auto parsed = parse_count(arg);
        if (!parsed)
            return parsed.error();
        if (counts.contains(parsed->first))
            return common::make_error(common::ErrorKind::usage,
                                      "scale: " + parsed->first + " is given twice");
        counts[parsed->first] = parsed->second;
    }
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    return for_each_host(ctx, *target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             auto answer =
                                 counts.empty()
                                     ? client.get_json(app_path(target->app) + "/ps")
                                     : client.post_json(app_path(target->app) + "/scale", counts);
                             if (!answer)
                                 return answer.error();
                             ctx.out->emit(output::Processes{host, *answer});
                             return {};
                         });
}

} // namespace

void add_scale(CLI::App& app, Context& ctx) {
    auto args = std::make_shared<std::vector<std::string>>();
    auto* cmd = app.add_subcommand("scale", "Set how many instances of each process run per host");
    cmd->add_option("COUNTS", *args,
                    "PROCESS=COUNT: web or a [processes] name, 0 to 64 (none: show the counts)");
    cmd->footer(
        "Counts are per host, kept by each agent across deploys, rollbacks and restarts, and\n"
        "applied at once to the PRODUCTION release: each web instance gets its own port and\n"
        "deploy-proxy balances requests over the healthy ones (round robin); a new instance\n"
        "is routed once its health check passes, one going away is drained first. web=0\n"
        "stops web and deploy-proxy answers 503. A deploy starts the new release at these\n"
        "counts. With --host, only that agent.\n\n"
        "Examples:\n  deployctl scale web=2 worker=1\n  deployctl scale\n"
        "  deployctl scale web=3 --host https://web2.example.com:7443\n");
    cmd->callback([&ctx, args] { ctx.command = [&ctx, args] { return scale(ctx, *args); }; });
}

} // namespace cli::commands
