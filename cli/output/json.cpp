// --json: one JSON object per line on stdout (docs/json.md).

#include <cli/output/json_events.hpp>

#include <mutex>
#include <ostream>

namespace cli::output {

namespace {

using nlohmann::json;

json string_or_null(const json& object, const char* key) {
    auto it = object.find(key);
    if (it == object.end() || it->is_null())
        return nullptr;
    return *it;
}

json string_or_null(const std::string& text) {
    if (text.empty())
        return nullptr;
    return text;
}

class JsonPrinter final : public Printer {
  public:
    JsonPrinter(std::ostream& out, std::ostream& err) : m_out(out), m_err(err) {}

    void warning(std::string_view message) override { m_err << "warning: " << message << '\n'; }
    void packaged(const PackageSummary& s) override {
        emit({{"event", "package"},
              {"app", s.app},
              {"commit", s.commit},
              {"message", s.message},
              {"files", s.files},
              {"bytes", s.bytes},
              {"dirty", s.dirty}});
    }
    void uploading(const std::string&, const UploadStats&) override {}
    void uploaded(const std::string& host, const UploadStats& stats) override {
        emit(upload_event(host, stats));
    }
    void created(const std::string& host, const std::string& release,
                 const std::string& state) override {
        emit(created_event(host, release, state));
    }
    void agent_event(const std::string& host, const json& event) override {
        emit(passthrough_event(event, host));
    }
    void done(const DoneInfo& info) override { emit(done_event(info)); }
    void rolled_back(const DoneInfo& info) override { emit(done_event(info)); }
    void removed(const std::string& host, const std::string& release) override {
        emit({{"event", "deleted"}, {"release", release}, {"host", host}});
    }
    void releases(const std::string& host, const json& list) override {
        json rows = json::array();
        if (list.is_array())
            for (const auto& r : list)
                rows.push_back(release_row(r, host));
        emit(rows);
    }
    void status(const std::string& host, const json& status) override {
        emit(status_object(status, host));
    }
    void env_list(const std::string& host, const json& answer) override {
        emit({{"event", "env"},
              {"app", answer.value("app", "")},
              {"vars", answer.value("vars", json::array())},
              {"host", host}});
    }
    void env_changed(const std::string& host, const json& answer) override {
        json object = answer;
        object["event"] = answer.contains("set") ? "env_set" : "env_unset";
        object["host"] = host;
        emit(object);
    }
    void version(std::string_view version) override {
        emit({{"event", "version"}, {"version", version}});
    }
    void agent(const std::string& host, bool info, const json& answer) override {
        json object = answer;
        object["event"] = info ? "agent" : "ping";
        object["host"] = host;
        emit(object);
    }
    void token_created(const std::string& host, const json& token) override {
        emit(with_event(token, "token", host));
    }
    void tokens(const std::string& host, const json& list) override {
        json rows = json::array();
        if (list.is_array())
            for (const auto& t : list)
                rows.push_back(with_event(t, "token", host));
        emit(rows);
    }
    void token_revoked(const std::string& host, const json& token) override {
        emit(with_event(token, "token_revoked", host));
    }
    void audit(const std::string& host, const json& list) override {
        if (list.is_array())
            for (const auto& entry : list)
                emit(with_event(entry, "audit", host));
    }
    void templates(const std::vector<TemplateSummary>& list) override {
        for (const auto& t : list)
            emit({{"event", "template"},
                  {"name", t.name},
                  {"description", t.description},
                  {"files", t.files}});
    }
    void initialized(const InitSummary& s) override {
        json files = json::array();
        for (const auto& f : s.files)
            files.push_back({{"path", f.path}, {"replaced", f.replaced}});
        emit({{"event", "init"},
              {"dir", s.dir},
              {"app", s.app},
              {"app_source", s.app_source},
              {"template", s.template_name},
              {"stack", s.stack},
              {"detected", s.detected},
              {"evidence", s.evidence},
              {"files", files},
              {"notes", s.notes},
              {"next", s.next}});
    }
    void error(const common::Error& error, const std::string& host) override {
        emit(error_event(error, host));
        std::lock_guard lock(m_mutex);
        m_err << "error: " << (host.empty() ? "" : host + ": ") << error.message << '\n';
    }
    // No progress events: `upload` reports the totals once the blobs are up.
    void upload_progress(const std::string&, std::uint64_t, std::uint64_t) override {}
    void summary(const Summary& summary) override { emit(summary_event(summary)); }

  private:
    static json with_event(const json& object, const char* event, const std::string& host) {
        json out = object.is_object() ? object : json::object();
        out["event"] = event;
        out["host"] = host;
        return out;
    }
    // One whole line at a time, also when several hosts deploy in parallel.
    void emit(const json& object) {
        const auto text =
            with_schema_version(object).dump(-1, ' ', false, json::error_handler_t::replace);
        std::lock_guard lock(m_mutex);
        m_out << text << '\n';
        m_out.flush();
    }

    std::mutex m_mutex;
    std::ostream& m_out;
    std::ostream& m_err;
};

} // namespace

json with_schema_version(const json& line) {
    if (line.is_object()) {
        json out = line;
        out["v"] = k_json_schema_version;
        return out;
    }
    json out = json::array();
    for (const auto& item : line)
        out.push_back(item.is_object() ? with_schema_version(item) : item);
    return out;
}

json upload_event(const std::string& host, const UploadStats& s) {
    return {{"event", "upload"},
            {"files", s.files},
            {"blobs_total", s.blobs_total},
            {"blobs_missing", s.blobs_missing},
            {"bytes_total", s.bytes_total},
            {"bytes_sent", s.bytes_sent},
            {"host", host}};
}

json created_event(const std::string& host, const std::string& release, const std::string& state) {
    return {{"event", "created"}, {"release", release}, {"state", state}, {"host", host}};
}

json done_event(const DoneInfo& info) {
    json event = {{"event", "done"},
                  {"release", info.release},
                  {"state", info.state},
                  {"url", string_or_null(info.url)},
                  {"error", info.error ? json(*info.error) : json(nullptr)},
                  {"host", info.host},
                  {"elapsed_ms", info.elapsed_ms}};
    if (!info.previous.empty())
        event["previous"] = info.previous;
    return event;
}

json error_event(const common::Error& error, const std::string& host) {
    json event = {{"event", "error"},
                  {"code", common::error_code(error.kind)},
                  {"message", error.message},
                  {"exit_code", common::exit_code(error.kind)}};
    if (!host.empty())
        event["host"] = host;
    return event;
}

json passthrough_event(const json& event, const std::string& host) {
    json copy = event.is_object() ? event : json{{"event", "unknown"}, {"data", event}};
    copy["host"] = host;
    return copy;
}

json release_row(const json& release, const std::string& host) {
    json row = {{"id", string_or_null(release, "id")},
                {"state", string_or_null(release, "state")},
                {"created_at", string_or_null(release, "created_at")},
                {"commit", string_or_null(release, "commit")},
                {"message", string_or_null(release, "message")},
                {"error", string_or_null(release, "error")}};
    if (!host.empty())
        row["host"] = host;
    return row;
}

json status_object(const json& status, const std::string& host) {
    json releases = json::array();
    if (auto it = status.find("releases"); it != status.end() && it->is_array())
        for (const auto& r : *it)
            releases.push_back(release_row(r, ""));
    return {{"event", "status"},
            {"app", string_or_null(status, "app")},
            {"production", string_or_null(status, "production")},
            {"url", string_or_null(status, "url")},
            {"domains", status.value("domains", json::array())},
            {"releases", releases},
            {"host", host}};
}

json summary_event(const Summary& s) {
    json hosts = json::array();
    for (const auto& row : s.rows) {
        json object = {{"host", row.host},
                       {"release", string_or_null(row.release)},
                       {"state", row.state},
                       {"previous", string_or_null(row.previous)},
                       {"elapsed_ms", row.elapsed_ms ? json(*row.elapsed_ms) : json(nullptr)},
                       {"note", string_or_null(row.note)}};
        hosts.push_back(std::move(object));
    }
    json event = {{"event", "summary"},         {"command", s.command}, {"ok", s.ok},
                  {"consistent", s.consistent}, {"hosts", hosts},       {"exit_code", s.exit_code}};
    if (s.command == "deploy") {
        event["strategy"] = s.strategy;
        event["elapsed_ms"] = s.elapsed_ms;
    }
    return event;
}

std::unique_ptr<Printer> make_json_printer(std::ostream& out, std::ostream& err) {
    return std::make_unique<JsonPrinter>(out, err);
}

} // namespace cli::output
