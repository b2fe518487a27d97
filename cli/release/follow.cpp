// Follow: a deployment's events, streamed until its `done` event.

#include <cli/output/format.hpp>
#include <cli/release/steps.hpp>
#include <cli/target.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <optional>

namespace cli::release {

using output::json_str;

common::Status follow_release(Context& ctx, transport::Client& client, const std::string& host,
                              const std::string& app, const std::string& release,
                              std::chrono::steady_clock::time_point started) {
    std::optional<nlohmann::json> done;
    auto path = fmt::format("{}/releases/{}/events?follow=1", app_path(app), release);
    auto st = client.stream_ndjson(path, [&](const nlohmann::json& event) {
        if (json_str(event, "event") == "done") {
            done = event;
            return false;
        }
        ctx.out->emit(output::AgentEvent{host, event});
        return true;
    });
    if (!st && st.error().kind == common::ErrorKind::connection)
        return common::make_error(common::ErrorKind::connection,
                                  fmt::format("lost the connection to the agent while following "
                                              "{} ({}); it may still finish: see deployctl status",
                                              release, st.error().message));
    if (!st)
        return st;
    if (!done)
        return common::make_error(common::ErrorKind::connection,
                                  fmt::format("lost the connection to the agent while following "
                                              "{}: the stream ended before the deployment "
                                              "finished; see deployctl status",
                                              release));
    auto elapsed = std::chrono::steady_clock::now() - started;
    output::DoneInfo info;
    info.host = host;
    info.release = json_str(*done, "release").empty() ? release : json_str(*done, "release");
    info.state = json_str(*done, "state");
    info.url = json_str(*done, "url");
    if (auto e = json_str(*done, "error"); !e.empty())
        info.error = e;
    info.elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
    ctx.out->emit(output::Done{info});
    if (info.state == "FAILED")
        return common::make_error(
            common::ErrorKind::failed,
            fmt::format("{} failed: {}", info.release, info.error.value_or("no reason given")));
    return {};
}

} // namespace cli::release
