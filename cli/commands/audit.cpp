// deployctl audit: who changed what on the agents (GET /v1/audit).

#include <CLI/CLI.hpp>
#include <cli/commands/commands.hpp>
#include <cli/context.hpp>
#include <cli/query.hpp>
#include <cli/target.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <memory>

namespace cli::commands {

namespace {

// deployctl audit (the app filter is -a/--app).
struct AuditOptions {
    int limit = 50;
    std::string since;
};

// "?limit=50&app=hello&since=1h", values percent-encoded.
std::string audit_query(const Context& ctx, const AuditOptions& o) {
    std::string query = fmt::format("?limit={}", o.limit);
    if (!ctx.global.app.empty())
        query += "&app=" + percent_encode(ctx.global.app);
    if (!o.since.empty())
        query += "&since=" + percent_encode(o.since);
    return query;
}

common::Status audit(Context& ctx, const AuditOptions& options) {
    if (options.limit < 1 || options.limit > 10000)
        return common::make_error(common::ErrorKind::usage, "--limit must be from 1 to 10000");
    auto target = resolve_target(ctx, ".", ConfigNeed::hosts_only);
    if (!target)
        return target.error();
    const auto path = "/v1/audit" + audit_query(ctx, options);
    return for_each_host(ctx, *target, OnError::keep_going,
                         [&](transport::Client& client, const std::string& host) -> common::Status {
                             auto list = client.get_json(path);
                             if (!list)
                                 return list.error();
                             ctx.out->emit(output::Audit{host, *list});
                             return {};
                         });
}

} // namespace

void add_audit(CLI::App& app, Context& ctx) {
    auto options = std::make_shared<AuditOptions>();
    auto* cmd = app.add_subcommand(
        "audit", "Show who changed what on the agents (every mutating call), newest first");
    cmd->add_option("--limit", options->limit, "At most this many entries")->capture_default_str();
    cmd->add_option("--since", options->since,
                    "Only entries since a time (RFC 3339) or for a duration back (1h, 7d)");
    cmd->footer("Examples:\n  deployctl audit --host http://127.0.0.1:7070\n"
                "  deployctl audit -a hello --limit 20\n  deployctl audit --json | jq .who\n\n"
                "With --app, only that app's entries; a token for one app sees only its app.\n"
                "Failed logins are one entry per client address and minute (who address:IP,\n"
                "with their count), seen with a token for all apps.\n");
    cmd->callback(
        [&ctx, options] { ctx.command = [&ctx, options] { return audit(ctx, *options); }; });
}

} // namespace cli::commands
