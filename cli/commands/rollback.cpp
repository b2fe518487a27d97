// deployctl rollback [RELEASE]: promote an INACTIVE release back to PRODUCTION.

#include <cli/commands/commands.hpp>
#include <cli/commands/steps.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

#include <chrono>

namespace cli::commands {

common::Status promote(transport::Client& client, output::Printer& out, const std::string& host,
                       const std::string& app, const nlohmann::json& body) {
    auto started = std::chrono::steady_clock::now();
    auto answer = client.post_json(app_path(app) + "/rollback", body);
    if (!answer)
        return answer.error();
    output::DoneInfo info;
    info.host = host;
    info.release = answer->value("release", "");
    info.state = answer->value("state", "PRODUCTION");
    info.previous = answer->value("previous", "");
    // The rollback answer has no URL; the status does.
    if (auto status = client.get_json(app_path(app)))
        if (auto it = status->find("url"); it != status->end() && it->is_string())
            info.url = it->get<std::string>();
    info.elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - started)
                          .count();
    out.emit(output::RolledBack{info});
    return {};
}

common::Status rollback(Context& ctx, const std::string& release) {
    if (!release.empty())
        if (auto st = check_release_id(release); !st)
            return st;
    auto target = resolve_target(ctx, ".", ConfigNeed::optional);
    if (!target)
        return target.error();
    nlohmann::json body = nlohmann::json::object();
    if (!release.empty())
        body["release"] = release;
    return for_each_host(ctx, *target, OnError::stop,
                         [&](transport::Client& client, const std::string& host) {
                             return promote(client, *ctx.out, host, target->app, body);
                         });
}

} // namespace cli::commands
