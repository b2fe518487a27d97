// Promote: put a release back in PRODUCTION (deployctl rollback, and the rollback of the
// hosts that switched when a multi-host deploy fails); end a canary either way.

#include <cli/release/steps.hpp>
#include <cli/target.hpp>

#include <nlohmann/json.hpp>

#include <chrono>

namespace cli::release {

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
    if (auto it = answer->find("release_command_skipped"); it != answer->end() && it->is_boolean())
        info.release_command_skipped = it->get<bool>();
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

common::Status end_canary(transport::Client& client, output::Printer& out, const std::string& host,
                          const std::string& app, const std::string& action) {
    auto answer = client.post_json(app_path(app) + "/canary/" + action, nlohmann::json::object());
    if (!answer)
        return answer.error();
    out.emit(output::Canary{host, action, *answer});
    return {};
}

} // namespace cli::release
