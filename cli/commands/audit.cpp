// deployctl audit: who changed what on the agents (GET /v1/audit).

#include <cli/commands/commands.hpp>
#include <cli/target.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace cli::commands {

namespace {

// "?limit=50&app=hello&since=1h", values percent-encoded.
std::string audit_query(const Context& ctx, const AuditOptions& o) {
    auto encode = [](const std::string& text) {
        std::string out;
        for (unsigned char c : text) {
            if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
                out += static_cast<char>(c);
            else
                out += fmt::format("%{:02X}", c);
        }
        return out;
    };
    std::string query = fmt::format("?limit={}", o.limit);
    if (!ctx.global.app.empty())
        query += "&app=" + encode(ctx.global.app);
    if (!o.since.empty())
        query += "&since=" + encode(o.since);
    return query;
}

} // namespace

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

} // namespace cli::commands
