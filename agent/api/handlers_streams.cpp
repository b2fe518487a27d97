// NDJSON streams: a deployment's events and an app's logs, read from the files
// the engine and the app write (agent/paths.hpp), optionally followed.

#include <agent/api/errors.hpp>
#include <agent/api/handler_util.hpp>
#include <agent/api/handlers.hpp>
#include <agent/api/json.hpp>
#include <agent/deploy/event_signal.hpp>
#include <agent/logs/filter.hpp>
#include <agent/logs/follow.hpp>
#include <agent/logs/rotating_file.hpp>
#include <agent/logs/stamp.hpp>
#include <common/config.hpp>
#include <common/log.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <sys/stat.h>
#include <thread>
#include <vector>

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
// line is a settled one too, so that no follower misses it. Woken by each
// event written (event_signal), the poll interval is only a fallback.
bool send_final_events(ApiContext& context, const std::filesystem::path& file,
                       logs::LineReader& events, StreamSink& sink,
                       std::optional<common::State>& last, std::uint64_t seen) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while ((!last || !common::is_settled(*last)) && std::chrono::steady_clock::now() < deadline) {
        event_signal::wait_after(file, seen, context.poll_interval);
        seen = event_signal::count(file);
        if (!send_events(events, sink, last))
            return false;
    }
    return true;
}

// ?grep=RE, ?since=T, ?until=T, ?lines=N and ?follow=1 of a logs request
// (docs/api.md).
struct LogQuery {
    logs::LineFilter filter;
    std::optional<logs::Micros> since, until; // the lines of this time range only
    std::optional<std::size_t> lines;         // the last N (matching) lines only
    bool follow = false;

    bool timed() const { return since || until; }
    // Whether a line of this time is in the range (a line without a time is
    // not, once there is a range).
    bool in_range(std::optional<logs::Micros> at) const {
        if (!timed())
            return true;
        return at && (!since || *at >= *since) && (!until || *at < *until);
    }
};

common::Result<std::shared_ptr<const LogQuery>> log_query(const Request& request) {
    auto query = std::make_shared<LogQuery>();
    if (auto it = request.query.find("grep"); it != request.query.end()) {
        auto filter = logs::LineFilter::compile(it->second);
        if (!filter)
            return filter.error();
        query->filter = std::move(*filter);
    }
    if (auto it = request.query.find("lines"); it != request.query.end()) {
        const auto& text = it->second;
        if (text.empty() || text.size() > 7 ||
            text.find_first_not_of("0123456789") != std::string::npos)
            return make_error(ErrorKind::bad_request,
                              fmt::format("lines must be a number of lines from 0 to 9999999, "
                                          "not '{}'",
                                          text.substr(0, 80)));
        query->lines = static_cast<std::size_t>(std::stoul(text));
    }
    const auto now = logs::now_micros();
    for (auto [key, bound] : {std::pair{"since", &query->since}, {"until", &query->until}})
        if (auto it = request.query.find(key); it != request.query.end()) {
            auto at = common::parse_time_bound(it->second, now);
            if (!at)
                return make_error(ErrorKind::bad_request,
                                  fmt::format("{}: {}", key, at.error().message));
            *bound = *at;
        }
    query->follow = flag_set(request.query, "follow");
    if (query->follow && query->until)
        return make_error(ErrorKind::bad_request,
                          "until and follow: a followed log has no end (leave out one of them)");
    return std::shared_ptr<const LogQuery>(std::move(query));
}

// A log file read as events: gives `each` the NDJSON line sent for each of its
// lines that match, up to `to` (default: the end); returns where its lines
// ended (logs::scan_lines).
using EachEvent = std::function<bool(const std::string&)>;
using LogSource = std::function<std::uint64_t(const EachEvent&, std::optional<std::uint64_t> to)>;
// What is sent for a line of a file the pattern matched; nullopt: nothing (a
// line outside the query's time range).
using MakeEvent = std::function<std::optional<std::string>(std::string_view)>;

// A file's last write, as a time.
logs::Micros last_written(const std::filesystem::path& file) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0)
        return 0;
    return static_cast<logs::Micros>(st.st_mtim.tv_sec) * 1000000 + st.st_mtim.tv_nsec / 1000;
}

// A time of an event or request record ("ts", "time": RFC 3339).
std::optional<logs::Micros> record_time(const nlohmann::json& record, const char* key) {
    auto it = record.find(key);
    if (it == record.end() || !it->is_string())
        return std::nullopt;
    return common::parse_rfc3339(it->get_ref<const std::string&>());
}

// A stamped line of an app's output (logs/stamp.hpp) as the event sent for it:
// {"event": "log", "ts", "release", "process", "stream", "line"}; nullopt when
// its time is outside the query's range.
std::optional<std::string> output_event(const LogQuery& query, std::string_view line,
                                        const std::string& release, const std::string& process,
                                        const std::string& stream) {
    const auto [stamp, text] = logs::split_stamp(line);
    if (query.timed() &&
        !query.in_range(stamp.empty() ? std::nullopt
                                      : std::optional<logs::Micros>(logs::stamp_time(stamp))))
        return std::nullopt;
    nlohmann::json event{{"event", "log"}};
    if (!stamp.empty())
        event["ts"] = stamp;
    event["release"] = release;
    event["process"] = process;
    event["stream"] = stream;
    event["line"] = text;
    return to_line(event);
}

// A file of plain lines (an app's or a process's output, the access log):
// `event` makes what is sent for a line.
LogSource plain_source(std::filesystem::path file, const logs::LineFilter& filter,
                       MakeEvent event) {
    return [file = std::move(file), &filter,
            event = std::move(event)](const EachEvent& each, std::optional<std::uint64_t> to) {
        return logs::scan_lines(
            file, filter,
            [&](std::string_view line) {
                auto sent = event(line);
                return !sent || each(*sent);
            },
            0, to);
    };
}

// A log's rotated generations (PATH.N.zst, logs/rotating_file.hpp), oldest
// first, decompressed: lines kept but no longer followed.
// With ?since, a generation last written before it is not read at all.
LogSource rotated_source(std::filesystem::path file, const LogQuery& query, MakeEvent event) {
    return [file = std::move(file), &query,
            event = std::move(event)](const EachEvent& each, std::optional<std::uint64_t>) {
        for (const auto& generation : logs::rotated_files(file)) {
            if (query.since && last_written(generation) < *query.since)
                continue;
            // Decompressed piece by piece: a generation is never held whole.
            logs::PieceScanner scanner(query.filter, [&](std::string_view line) {
                auto sent = event(line);
                return !sent || each(*sent);
            });
            auto read = logs::read_log_pieces(
                generation, [&](std::string_view piece) { return scanner.feed(piece); });
            if (read && !scanner.finish()) // else gone: rotated away meanwhile
                break;
        }
        return std::uint64_t{0};
    };
}

// The "log" event of a release's event log whose line matches, with "process"
// "" (build output and the agent's own lines come from no process).
std::optional<std::string> matching_log_event(std::string_view text, const LogQuery& query) {
    auto event = nlohmann::json::parse(text, nullptr, false);
    if (!event.is_object() || event.value("event", "") != "log")
        return std::nullopt;
    if (!query.filter.all() && !query.filter.matches(event.value("line", "")))
        return std::nullopt;
    if (query.timed() && !query.in_range(record_time(event, "ts")))
        return std::nullopt;
    if (!event.contains("process"))
        event["process"] = "";
    return to_line(event);
}

// A release's event log: its log events (build output, the agent's lines).
LogSource event_log_source(std::filesystem::path file, const LogQuery& query) {
    return
        [file = std::move(file), &query](const EachEvent& each, std::optional<std::uint64_t> to) {
            static const logs::LineFilter every;
            return logs::scan_lines(
                file, every,
                [&](std::string_view text) {
                    auto event = matching_log_event(text, query);
                    return !event || each(*event);
                },
                0, to);
        };
}

// Lines written together, up to k_batch bytes at a time: a search that finds
// many lines costs a write per batch, not one per line.
class Batch {
  public:
    static constexpr std::size_t k_batch = 64 * 1024;
    explicit Batch(StreamSink& sink) : m_sink(sink) {}
    bool add(std::string_view line) {
        if (!m_text.empty())
            m_text += '\n';
        m_text += line;
        return m_text.size() < k_batch || flush();
    }
    bool flush() {
        if (m_text.empty())
            return true;
        const bool sent = m_sink.write(m_text); // which ends it with '\n'
        m_text.clear();
        return sent;
    }

  private:
    StreamSink& m_sink;
    std::string m_text;
};

// Sends the sources' events in order; with `lines`, only the last that many of
// them all (counted first, then sent up to where each source had ended).
// Returns where each source's lines ended, for a follower; nullopt once the
// client has gone.
std::optional<std::vector<std::uint64_t>> send_sources(const std::vector<LogSource>& sources,
                                                       std::optional<std::size_t> lines,
                                                       StreamSink& sink) {
    std::vector<std::optional<std::uint64_t>> limits(sources.size());
    std::size_t skip = 0;
    if (lines) {
        std::size_t total = 0;
        for (std::size_t i = 0; i < sources.size(); ++i)
            limits[i] =
                sources[i]([&total](const std::string&) { return ++total, true; }, std::nullopt);
        skip = total > *lines ? total - *lines : 0;
    }
    bool alive = true;
    Batch batch(sink);
    std::vector<std::uint64_t> ends;
    for (std::size_t i = 0; i < sources.size() && alive; ++i)
        ends.push_back(sources[i](
            [&](const std::string& event) {
                if (skip > 0)
                    return --skip, true;
                return alive = batch.add(event);
            },
            limits[i]));
    if (!alive || !batch.flush())
        return std::nullopt;
    return ends;
}

// A followed file of plain lines: the new ones that match, each as `event`
// makes it; false once the client has gone.
bool send_new_lines(logs::LineReader& reader, const logs::LineFilter& filter,
                    const MakeEvent& event, StreamSink& sink) {
    for (const auto& line : reader.read_new_lines()) {
        if (!filter.matches(line))
            continue;
        if (auto sent = event(line); sent && !sink.write(*sent))
            return false;
    }
    return true;
}

// The web process's output of release `id` (its app log).
MakeEvent web_output(const LogQuery& query, const std::string& id) {
    return
        [&query, id](std::string_view line) { return output_event(query, line, id, "web", "app"); };
}

bool send_new_logs(logs::LineReader& events, logs::LineReader& app_output, const std::string& id,
                   const LogQuery& query, StreamSink& sink) {
    for (const auto& line : events.read_new_lines())
        if (auto event = matching_log_event(line, query); event && !sink.write(*event))
            return false;
    return send_new_lines(app_output, query.filter, web_output(query, id), sink);
}

// A release's logs: its build and system log events, then the app's own
// output (the rotated generations, then the current file, which comes last).
void add_release_sources(std::vector<LogSource>& sources, const DataDir& data,
                         const std::string& app, const std::string& id, const LogQuery& query) {
    sources.push_back(event_log_source(data.event_log(app, id), query));
    sources.push_back(rotated_source(data.app_log(app, id), query, web_output(query, id)));
    sources.push_back(plain_source(data.app_log(app, id), query.filter, web_output(query, id)));
}

// A release's logs (add_release_sources); when following, keeps tailing its
// event log and app log until the client goes away.
void stream_logs(ApiContext& context, const std::string& app, const std::string& id,
                 const LogQuery& query, StreamSink& sink) {
    std::vector<LogSource> sources;
    add_release_sources(sources, context.data_dir, app, id, query);
    auto ends = send_sources(sources, query.lines, sink);
    if (!ends || !query.follow)
        return;
    logs::LineReader events(context.data_dir.event_log(app, id), ends->front());
    logs::LineReader app_output(context.data_dir.app_log(app, id), ends->back());
    while (sink.alive() && send_new_logs(events, app_output, id, query, sink))
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
    std::string stream;  // the events' "stream" and "process"
    std::string release; // the PRODUCTION release whose process it is ("" for cron)
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
            return ProcessLog{file, process, id};
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
            return ProcessLog{context.data_dir.cron_log(app, job.name), process, ""};
        names += (names.empty() ? "" : ", ") + std::string(k_cron) + job.name;
    }
    return make_error(
        ErrorKind::not_found,
        fmt::format("app '{}' has no process '{}' ({})", app, process.substr(0, 80),
                    names.empty() ? "it has no [[cron]] jobs" : "its processes: " + names));
}

void stream_process_log(ApiContext& context, const ProcessLog& log, const LogQuery& query,
                        StreamSink& sink) {
    MakeEvent event = [&log, &query](std::string_view line) {
        return output_event(query, line, log.release, log.stream, log.stream);
    };
    auto ends = send_sources(
        {rotated_source(log.file, query, event), plain_source(log.file, query.filter, event)},
        query.lines, sink);
    if (!ends || !query.follow)
        return;
    logs::LineReader lines(log.file, ends->back());
    while (sink.alive() && send_new_lines(lines, query.filter, event, sink))
        std::this_thread::sleep_for(context.poll_interval);
}

// An access log line as the event sent for it: {"event": "access", "ts",
// "request": RECORD} (a line that is not a JSON object is passed on as a
// log line of stream "access"); nullopt outside the query's time range.
std::optional<std::string> access_event(const LogQuery& query, std::string_view line) {
    auto record = nlohmann::json::parse(line, nullptr, false);
    if (!record.is_object()) {
        if (query.timed())
            return std::nullopt;
        return to_line(nlohmann::json{{"event", "log"},
                                      {"release", ""},
                                      {"process", ""},
                                      {"stream", "access"},
                                      {"line", line}});
    }
    const auto at = record_time(record, "time");
    if (!query.in_range(at))
        return std::nullopt;
    nlohmann::json event{{"event", "access"}};
    if (at)
        event["ts"] = common::format_micros(*at);
    event["request"] = std::move(record);
    return to_line(event);
}

// ?access=1: the app's access log (docs/metrics.md): with ?lines=N its last
// N requests (that match), else all that is kept (access.ndjson.1, then
// access.ndjson); with ?follow=1 then each new one. Rotation while following is
// seen as the file being replaced (LineReader starts the new file over).
void stream_access_log(const std::filesystem::path& file, const LogQuery& query,
                       std::chrono::milliseconds poll, StreamSink& sink) {
    auto rotated = file;
    rotated += ".1";
    MakeEvent event = [&query](std::string_view line) { return access_event(query, line); };
    auto ends = send_sources(
        {plain_source(rotated, query.filter, event), plain_source(file, query.filter, event)},
        query.lines, sink);
    if (!ends || !query.follow)
        return;
    logs::LineReader reader(file, ends->back());
    while (sink.alive() && send_new_lines(reader, query.filter, event, sink))
        std::this_thread::sleep_for(poll);
}

Response app_logs(ApiContext& context, const Request& request) {
    auto app = app_param(request);
    if (!app)
        return error_response(app.error());
    auto query = log_query(request);
    if (!query)
        return error_response(query.error());
    if (flag_set(request.query, "all")) {
        if (request.query.count("process") || request.query.count("release") ||
            request.query.count("access"))
            return error_response(make_error(ErrorKind::bad_request,
                                             "all (every kept release) takes no release, "
                                             "process or access"));
        if (query->get()->follow)
            return error_response(make_error(
                ErrorKind::bad_request,
                "all and follow: only one release is followed (leave out all for PRODUCTION's)"));
        auto status = known_app(context, *app);
        if (!status)
            return error_response(status.error());
        std::vector<std::string> ids; // oldest first
        for (auto it = status->releases.rbegin(); it != status->releases.rend(); ++it)
            ids.push_back(it->id);
        return ndjson([&context, app = *app, ids, query = *query](StreamSink& sink) {
            std::vector<LogSource> sources;
            for (const auto& id : ids)
                add_release_sources(sources, context.data_dir, app, id, *query);
            send_sources(sources, query->lines, sink);
        });
    }
    if (flag_set(request.query, "access")) {
        if (request.query.count("process") || request.query.count("release"))
            return error_response(make_error(ErrorKind::bad_request,
                                             "access takes neither process nor release: an app has "
                                             "one access log"));
        if (auto status = known_app(context, *app); !status)
            return error_response(status.error());
        return ndjson([file = context.data_dir.access_log(*app), query = *query,
                       poll = context.poll_interval](StreamSink& sink) {
            stream_access_log(file, *query, poll, sink);
        });
    }
    if (auto it = request.query.find("process"); it != request.query.end()) {
        auto log = process_log(context, *app, it->second);
        if (!log)
            return error_response(log.error());
        return ndjson([&context, log = *log, query = *query](StreamSink& sink) {
            stream_process_log(context, log, *query, sink);
        });
    }
    auto id = logs_release(context, *app, request);
    if (!id)
        return error_response(id.error());
    return ndjson([&context, app = *app, id = *id, query = *query](StreamSink& sink) {
        stream_logs(context, app, id, *query, sink);
    });
}

} // namespace

// Sends the event log from the start; when following, tails it until the
// release is settled and the file has been read to its end, then says done.
void stream_events(ApiContext& context, const std::string& app, const std::string& id, bool follow,
                   StreamSink& sink) {
    const auto file = context.data_dir.event_log(app, id);
    logs::LineReader events(file);
    std::optional<common::State> last;
    while (true) {
        // Counted before the state and the file are read: an event written
        // after this point ends the wait below at once.
        const auto seen = event_signal::count(file);
        auto release = context.service.release(app, id);
        if (!release) {
            common::log_info(fmt::format("events of {}/{}: {}", app, id, release.error().message));
            return;
        }
        const bool settled = common::is_settled(release->state); // checked before reading
        if (!send_events(events, sink, last))
            return;
        if (settled) {
            if (!send_final_events(context, file, events, sink, last, seen))
                return;
            write_done(context, sink, *release);
            return;
        }
        if (!follow || !sink.alive())
            return;
        event_signal::wait_after(file, seen, context.poll_interval);
    }
}

void add_stream_routes(Router& router, ApiContext& context) {
    router.add("GET", "/v1/apps/{app}/releases/{id}/events",
               [&context](const Request& request) { return events(context, request); });
    router.add("GET", "/v1/apps/{app}/logs",
               [&context](const Request& request) { return app_logs(context, request); });
}

} // namespace agent::api
