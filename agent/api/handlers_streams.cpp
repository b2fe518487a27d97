// NDJSON streams: a deployment's events and an app's logs, read from the files
// the engine and the app write (agent/paths.hpp), optionally followed.

#include <agent/api/errors.hpp>
#include <agent/api/handler_util.hpp>
#include <agent/api/handlers.hpp>
#include <agent/api/json.hpp>
#include <agent/logs/follow.hpp>
#include <common/config.hpp>
#include <common/log.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <thread>

namespace agent::api {

namespace {

using common::ErrorKind;
using common::make_error;

bool write_done(ApiContext& context, StreamSink& sink, const ReleaseInfo& release) {
    auto status = context.service.status(release.app);
    const std::string url = status ? status->url : std::string();
    return sink.write(to_line(done_event(release, url)));
}

// The state a "state" event line announces, if it is one.
std::optional<common::State> state_event(const std::string& line) {
    const auto event = nlohmann::json::parse(line, nullptr, false);
    if (!event.is_object() || event.value("event", "") != "state")
        return std::nullopt;
    return common::parse_state(event.value("state", ""));
}

// Sends new lines, remembering the last state event among them.
bool send_events(logs::LineReader& events, StreamSink& sink, std::optional<common::State>& last) {
    for (const auto& line : events.read_new_lines()) {
        if (auto state = state_event(line))
            last = state;
        if (!sink.write(line))
            return false;
    }
    return true;
}

// The engine appends the settling "state" event just after it commits the
// state: once the release is settled, wait briefly until the log's last state
// line is a settled one too, so that no follower misses it.
bool send_final_events(ApiContext& context, logs::LineReader& events, StreamSink& sink,
                       std::optional<common::State>& last) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while ((!last || !common::is_settled(*last)) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(context.poll_interval);
        if (!send_events(events, sink, last))
            return false;
    }
    return true;
}

// Sends the event log from the start; when following, tails it until the
// release is settled and the file has been read to its end, then says done.
void stream_events(ApiContext& context, const std::string& app, const std::string& id, bool follow,
                   StreamSink& sink) {
    logs::LineReader events(context.data_dir.event_log(app, id));
    std::optional<common::State> last;
    while (true) {
        auto release = context.service.release(app, id);
        if (!release) {
            common::log_info(fmt::format("events of {}/{}: {}", app, id, release.error().message));
            return;
        }
        const bool settled = common::is_settled(release->state); // checked before reading
        if (!send_events(events, sink, last))
            return;
        if (settled) {
            if (!send_final_events(context, events, sink, last))
                return;
            write_done(context, sink, *release);
            return;
        }
        if (!follow || !sink.alive())
            return;
        std::this_thread::sleep_for(context.poll_interval);
    }
}

bool is_log_event(const std::string& line) {
    const auto event = nlohmann::json::parse(line, nullptr, false);
    return event.is_object() && event.value("event", "") == "log";
}

bool send_new_logs(logs::LineReader& events, logs::LineReader& app_output, const std::string& id,
                   StreamSink& sink) {
    for (const auto& line : events.read_new_lines())
        if (is_log_event(line) && !sink.write(line))
            return false;
    for (const auto& line : app_output.read_new_lines())
        if (!sink.write(to_line(app_log_event(id, line))))
            return false;
    return true;
}

// Build and system log events, then the app's own output; when following,
// keeps tailing both until the client goes away.
void stream_logs(ApiContext& context, const std::string& app, const std::string& id, bool follow,
                 StreamSink& sink) {
    logs::LineReader events(context.data_dir.event_log(app, id));
    logs::LineReader app_output(context.data_dir.app_log(app, id));
    while (send_new_logs(events, app_output, id, sink) && follow && sink.alive())
        std::this_thread::sleep_for(context.poll_interval);
}

Response ndjson(std::function<void(StreamSink&)> producer) {
    Response response;
    response.content_type = "application/x-ndjson";
    response.stream = std::move(producer);
    return response;
}

Response events(ApiContext& context, const Request& request) {
    auto ref = release_ref(request);
    if (!ref)
        return error_response(ref.error());
    if (auto release = context.service.release(ref->app, ref->id); !release)
        return error_response(release.error());
    const bool follow = flag_set(request.query, "follow");
    return ndjson([&context, ref = *ref, follow](StreamSink& sink) {
        stream_events(context, ref.app, ref.id, follow, sink);
    });
}

// The app's PRODUCTION release; not_found for an unknown app or one without
// (`hint` ends that message).
// The app's status; not_found for an unknown app says so in those words.
common::Result<AppStatus> known_app(ApiContext& context, const std::string& app) {
    auto status = context.service.status(app);
    if (!status && status.error().kind == ErrorKind::not_found)
        return make_error(ErrorKind::not_found,
                          fmt::format("no app named '{}' on this agent", app));
    return status;
}

common::Result<std::string> production_release(ApiContext& context, const std::string& app,
                                               std::string_view hint) {
    auto status = known_app(context, app);
    if (!status)
        return status.error();
    if (!status->production)
        return make_error(ErrorKind::not_found,
                          fmt::format("app '{}' has no PRODUCTION release{}", app, hint));
    return *status->production;
}

// ?release=ID, else the PRODUCTION release.
common::Result<std::string> logs_release(ApiContext& context, const std::string& app,
                                         const Request& request) {
    if (auto it = request.query.find("release"); it != request.query.end()) {
        if (!is_release_id(it->second))
            return make_error(ErrorKind::bad_request,
                              fmt::format("release must look like v1, v2, ..., not '{}'",
                                          it->second.substr(0, 80)));
        auto release = context.service.release(app, it->second);
        if (!release)
            return release.error();
        return it->second;
    }
    return production_release(context, app, "; name a release");
}

// ?process=NAME: the log of one process of the app instead of the release's
// logs: a process of the PRODUCTION release ([processes]: web, worker, ...)
// or a [[cron]] job's runs (cron.JOB); an unknown name is not_found.
struct ProcessLog {
    std::filesystem::path file;
    std::string stream; // the events' "stream"
};
common::Result<ProcessLog> process_log(ApiContext& context, const std::string& app,
                                       const std::string& process) {
    constexpr std::string_view k_cron = "cron.";
    if (process.rfind(k_cron, 0) != 0) {
        // A process of the PRODUCTION release ([processes]): web is its app log.
        auto production = production_release(context, app, "");
        if (!production)
            return production.error();
        const auto& id = *production;
        auto file = process == "web" ? context.data_dir.app_log(app, id)
                                     : context.data_dir.process_log(app, id, process);
        std::error_code ec;
        if (common::is_valid_process_name(process) && std::filesystem::exists(file, ec))
            return ProcessLog{file, process};
        return make_error(ErrorKind::not_found,
                          fmt::format("app '{}' has no process '{}' in its PRODUCTION release {} "
                                      "(deployctl ps lists them)",
                                      app, process.substr(0, 80), id));
    }
    auto jobs = context.service.cron_jobs(app);
    if (!jobs)
        return jobs.error();
    std::string names;
    for (const auto& job : *jobs) {
        if (process.size() > k_cron.size() && process.compare(0, k_cron.size(), k_cron) == 0 &&
            process.substr(k_cron.size()) == job.name)
            return ProcessLog{context.data_dir.cron_log(app, job.name), process};
        names += (names.empty() ? "" : ", ") + std::string(k_cron) + job.name;
    }
    return make_error(
        ErrorKind::not_found,
        fmt::format("app '{}' has no process '{}' ({})", app, process.substr(0, 80),
                    names.empty() ? "it has no [[cron]] jobs" : "its processes: " + names));
}

void stream_process_log(ApiContext& context, const ProcessLog& log, bool follow, StreamSink& sink) {
    logs::LineReader lines(log.file);
    auto send = [&] {
        for (const auto& line : lines.read_new_lines()) {
            nlohmann::json event = {
                {"event", "log"}, {"release", ""}, {"stream", log.stream}, {"line", line}};
            if (!sink.write(to_line(event)))
                return false;
        }
        return true;
    };
    while (send() && follow && sink.alive())
        std::this_thread::sleep_for(context.poll_interval);
}

// An access log line as the event sent for it: {"event": "access",
// "request": RECORD} (a line that is not a JSON object is passed on as a
// log line of stream "access").
nlohmann::json access_event(const std::string& line) {
    auto record = nlohmann::json::parse(line, nullptr, false);
    if (!record.is_object())
        return {{"event", "log"}, {"release", ""}, {"stream", "access"}, {"line", line}};
    return {{"event", "access"}, {"request", std::move(record)}};
}

// ?access=1: the app's access log (docs/metrics.md): with ?lines=N its last
// N requests, else all that is kept (access.ndjson.1, then access.ndjson);
// with ?follow=1 then each new one. Rotation while following is seen as the
// file shrinking (LineReader starts the new file over).
void stream_access_log(const std::filesystem::path& file, std::optional<std::size_t> lines,
                       bool follow, std::chrono::milliseconds poll, StreamSink& sink) {
    auto rotated = file;
    rotated += ".1";
    auto send = [&sink](logs::LineReader& reader) {
        for (const auto& line : reader.read_new_lines())
            if (!sink.write(to_line(access_event(line))))
                return false;
        return true;
    };
    const auto current = lines ? logs::tail_offset(file, *lines) : logs::Tail{};
    if (!lines || current.lines < *lines) {
        const auto older = lines ? logs::tail_offset(rotated, *lines - current.lines) : logs::Tail{};
        logs::LineReader before(rotated, older.offset);
        if (!send(before))
            return;
    }
    logs::LineReader reader(file, current.offset);
    while (send(reader) && follow && sink.alive())
        std::this_thread::sleep_for(poll);
}

Response app_logs(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    if (flag_set(request.query, "access")) {
        if (request.query.count("process") || request.query.count("release"))
            return error_response(make_error(
                ErrorKind::bad_request, "access takes neither process nor release: an app has "
                                        "one access log"));
        std::optional<std::size_t> lines;
        if (auto it = request.query.find("lines"); it != request.query.end()) {
            const auto& text = it->second;
            if (text.empty() || text.size() > 7 ||
                text.find_first_not_of("0123456789") != std::string::npos)
                return error_response(make_error(
                    ErrorKind::bad_request,
                    fmt::format("lines must be a number of lines from 0 to 9999999, not '{}'",
                                text.substr(0, 80))));
            lines = static_cast<std::size_t>(std::stoul(text));
        }
        if (auto status = known_app(context, *app); !status)
            return error_response(status.error());
        const bool follow = flag_set(request.query, "follow");
        return ndjson([file = context.data_dir.access_log(*app), lines, follow,
                       poll = context.poll_interval](StreamSink& sink) {
            stream_access_log(file, lines, follow, poll, sink);
        });
    }
    if (auto it = request.query.find("process"); it != request.query.end()) {
        auto log = process_log(context, *app, it->second);
        if (!log)
            return error_response(log.error());
        const bool follow = flag_set(request.query, "follow");
        return ndjson([&context, log = *log, follow](StreamSink& sink) {
            stream_process_log(context, log, follow, sink);
        });
    }
    auto id = logs_release(context, *app, request);
    if (!id)
        return error_response(id.error());
    const bool follow = flag_set(request.query, "follow");
    return ndjson([&context, app = *app, id = *id, follow](StreamSink& sink) {
        stream_logs(context, app, id, follow, sink);
    });
}

} // namespace

void add_stream_routes(Router& router, ApiContext& context) {
    router.add("GET", "/v1/apps/{app}/releases/{id}/events",
               [&context](const Request& request) { return events(context, request); });
    router.add("GET", "/v1/apps/{app}/logs",
               [&context](const Request& request) { return app_logs(context, request); });
}

} // namespace agent::api
