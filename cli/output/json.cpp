// --json: one JSON object per line on stdout (docs/json.md).

#include <cli/output/format.hpp>
#include <cli/output/json_events.hpp>
#include <cli/output/printer.hpp>

#include <mutex>
#include <ostream>
#include <variant>

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

    void emit(const Event& event) override {
        std::visit([this](const auto& e) { render(e); }, event);
    }

  private:
    // One overload per kind of event: emit() does not compile without it.
    void render(const Version& e) {
        json object{{"event", "version"}, {"version", e.version}};
        if (!e.host.empty())
            object["host"] = e.host;
        write(object);
    }
    void render(const Completion& e) {
        write({{"event", "completion"}, {"shell", e.shell}, {"script", e.script}});
    }
    void render(const Warning& e) { m_err << "warning: " << e.message << '\n'; }
    void render(const PackageSummary& s) {
        write({{"event", "package"},
               {"app", s.app},
               {"commit", s.commit},
               {"message", s.message},
               {"files", s.files},
               {"bytes", s.bytes},
               {"dirty", s.dirty}});
    }
    // `upload` comes once, with the totals, when the blobs are up: nothing before it,
    // and no progress events.
    void render(const Uploading&) {}
    void render(const UploadProgress&) {}
    void render(const Uploaded& e) { write(upload_event(e.host, e.stats)); }
    void render(const Created& e) { write(created_event(e.host, e.release, e.state)); }
    void render(const Unchanged& e) {
        write({{"event", "unchanged"},
               {"release", e.release},
               {"state", "PRODUCTION"},
               {"commit", string_or_null(e.commit)},
               {"dirty", e.dirty},
               {"url", string_or_null(e.url)},
               {"host", e.host}});
    }
    void render(const AgentEvent& e) { write(passthrough_event(*e.event, e.host)); }
    void render(const Done& info) { write(done_event(info)); }
    void render(const RolledBack& info) { write(done_event(info)); }
    void render(const Removed& e) {
        write({{"event", "deleted"}, {"release", e.release}, {"host", e.host}});
    }
    void render(const Releases& e) {
        json rows = json::array();
        if (e.list->is_array())
            for (const auto& r : *e.list)
                rows.push_back(release_row(r, e.host));
        write(rows);
    }
    void render(const Status& e) { write(status_object(*e.status, e.host)); }
    // One object per host: the agent's answer, with the host.
    void render(const Processes& e) {
        json out = e.list->is_object() ? *e.list : json::object();
        out["event"] = "processes";
        out["host"] = e.host;
        write(out);
    }
    void render(const Apps& e) {
        if (e.list->is_array())
            for (const auto& app : *e.list)
                write({{"event", "app"},
                       {"app", string_or_null(app, "app")},
                       {"production", string_or_null(app, "production")},
                       {"state", string_or_null(app, "state")},
                       {"commit", string_or_null(app, "commit")},
                       {"url", string_or_null(app, "url")},
                       {"host", e.host}});
    }
    void render(const Canary& e) {
        const char* event = e.action == "promote" ? "canary_promoted"
                            : e.action == "abort" ? "canary_aborted"
                                                  : "canary";
        json out = *e.answer;
        out["event"] = event;
        if (!e.host.empty())
            out["host"] = e.host;
        write(out);
    }
    void render(const AppChanged& e) {
        const char* event = e.action == "stop"    ? "stopped"
                            : e.action == "start" ? "started"
                                                  : "restarted";
        write({{"event", event},
               {"app", string_or_null(*e.answer, "app")},
               {"release", string_or_null(*e.answer, "release")},
               {"state", string_or_null(*e.answer, "state")},
               {"changed", e.answer->value("changed", true)},
               {"pid", string_or_null(*e.answer, "pid")},
               {"host", e.host}});
    }
    void render(const TrafficChanged& e) {
        const json& a = *e.answer;
        write({{"event", "traffic"},
               {"action", e.action},
               {"app", string_or_null(a, "app")},
               {"maintenance", a.contains("maintenance") ? a["maintenance"] : json()},
               {"paused", a.contains("paused") ? a["paused"] : json()},
               {"host", e.host}});
    }
    void render(const AppDestroyed& e) {
        write({{"event", "destroyed"},
               {"app", string_or_null(*e.answer, "destroyed")},
               {"releases", e.answer->value("releases", json::array())},
               {"blobs_removed", e.answer->value("blobs_removed", 0)},
               {"blobs_kept", e.answer->value("blobs_kept", 0)},
               {"previews", e.answer->value("previews", json::array())},
               {"host", e.host}});
    }
    void render(const EnvList& e) {
        write({{"event", "env"},
               {"app", e.answer->value("app", "")},
               {"vars", e.answer->value("vars", json::array())},
               {"host", e.host}});
    }
    void render(const CronJobs& e) {
        write({{"event", "cron"},
               {"app", e.answer->value("app", "")},
               {"jobs", e.answer->value("jobs", json::array())},
               {"host", e.host}});
    }
    void render(const CronStarted& e) { write(with_event(*e.answer, "cron_run", e.host)); }
    void render(const BuildCache& e) { write(with_event(*e.answer, "build_cache", e.host)); }
    void render(const BuildCacheCleared& e) {
        write(with_event(*e.answer, "build_cache_cleared", e.host));
    }
    void render(const HookSecret& e) { write(with_event(*e.answer, "hook_secret", e.host)); }
    void render(const HookKey& e) { write(with_event(*e.answer, "hook_key", e.host)); }
    void render(const HookDeliveries& e) {
        write({{"event", "hook_deliveries"},
               {"app", e.answer->value("app", "")},
               {"deliveries", e.answer->value("deliveries", json::array())},
               {"host", e.host}});
    }
    void render(const Previews& e) {
        write({{"event", "previews"},
               {"app", e.answer->value("app", "")},
               {"previews", e.answer->value("previews", json::array())},
               {"host", e.host}});
    }
    void render(const Certificates& e) {
        write({{"event", "certificates"},
               {"acme", e.answer->value("acme", false)},
               {"certificates", e.answer->value("certificates", json::array())},
               {"host", e.host}});
    }
    void render(const EnvChanged& e) {
        json object = *e.answer;
        object["event"] = e.answer->contains("set") ? "env_set" : "env_unset";
        object["host"] = e.host;
        write(object);
    }
    void render(const Agent& e) {
        json object = *e.answer;
        object["event"] = e.query == AgentQuery::info    ? "agent"
                          : e.query == AgentQuery::disk  ? "disk"
                          : e.query == AgentQuery::prune ? "prune"
                                                         : "ping";
        object["host"] = e.host;
        write(object);
    }
    void render(const TokenCreated& e) { write(with_event(*e.token, "token", e.host)); }
    void render(const Tokens& e) {
        json rows = json::array();
        if (e.list->is_array())
            for (const auto& t : *e.list)
                rows.push_back(with_event(t, "token", e.host));
        write(rows);
    }
    void render(const LoggedIn& e) {
        write({{"event", "login"}, {"host", e.host}, {"file", e.file}, {"replaced", e.replaced}});
    }
    void render(const InstallStep& e) {
        json line{{"event", "install_step"},
                  {"host", e.host},
                  {"step", e.step},
                  {"state", e.state},
                  {"detail", e.detail}};
        if (!e.commands.empty())
            line["commands"] = e.commands;
        write(line);
    }
    void render(const Installed& e) {
        write({{"event", "installed"},
               {"host", e.host},
               {"version", e.version},
               {"changed", e.changed},
               {"dry_run", e.dry_run},
               {"seconds", e.seconds},
               {"next", e.next}});
    }
    void render(const TokenRevoked& e) { write(with_event(*e.token, "token_revoked", e.host)); }
    void render(const Audit& e) {
        if (e.list->is_array())
            for (const auto& entry : *e.list)
                write(with_event(entry, "audit", e.host));
    }
    void render(const RunOutput& e) {
        write({{"event", "output"}, {"stream", e.stream}, {"data", e.data}, {"host", e.host}});
    }
    void render(const RunExit& e) {
        json object{{"event", "exit"}, {"status", e.status}};
        if (e.signal)
            object["signal"] = *e.signal;
        if (e.error)
            object["error"] = *e.error;
        object["host"] = e.host;
        write(object);
    }
    void render(const Error& e) {
        write(error_event(e.error, e.host));
        std::lock_guard lock(m_mutex);
        m_err << "error: " << (e.host.empty() ? "" : e.host + ": ") << e.error.message << '\n';
    }
    void render(const Summary& summary) { write(summary_event(summary)); }
    void render(const Templates& e) {
        for (const auto& t : e.list)
            write({{"event", "template"},
                   {"name", t.name},
                   {"description", t.description},
                   {"files", t.files}});
    }
    void render(const InitSummary& s) {
        json files = json::array();
        for (const auto& f : s.files)
            files.push_back({{"path", f.path}, {"replaced", f.replaced}});
        write({{"event", "init"},
               {"dir", s.dir},
               {"app", s.app},
               {"app_source", s.app_source},
               {"template", s.template_name},
               {"stack", s.stack},
               {"detected", s.detected},
               {"evidence", s.evidence},
               {"files", files},
               {"variant", s.variant},
               {"variant_reason", s.variant_reason},
               {"engine", s.engine},
               {"needs", s.needs},
               {"notes", s.notes},
               {"next", s.next}});
    }

    static json with_event(const json& object, const char* event, const std::string& host) {
        json out = object.is_object() ? object : json::object();
        out["event"] = event;
        out["host"] = host;
        return out;
    }
    // One whole line at a time, also when several hosts deploy in parallel.
    void write(const json& object) {
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
    json out = {{"event", "upload"},
                {"files", s.files},
                {"blobs_total", s.blobs_total},
                {"blobs_missing", s.blobs_missing},
                {"bytes_total", s.bytes_total},
                {"bytes_sent", s.bytes_sent},
                {"wire_bytes", s.wire_bytes}};
    if (!s.tree.empty()) // sent as a Merkle tree (an older agent gets the flat manifest)
        out["tree"] = s.tree;
    out["host"] = host;
    return out;
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
    if (info.unchanged)
        event["unchanged"] = true;
    if (info.release_command_skipped)
        event["release_command_skipped"] = true;
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
                {"dirty", json_true(release, "dirty")},
                {"error", string_or_null(release, "error")},
                {"standby", json_true(release, "standby")}};
    // When each release served: [{"from", "until"}], until null while it still serves.
    auto served = release.find("served");
    row["served"] = served != release.end() && served->is_array() ? *served : json::array();
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
            {"state", string_or_null(status, "state")},
            {"previous", string_or_null(status, "previous")},
            {"next_release", string_or_null(status, "next_release")},
            {"url", string_or_null(status, "url")},
            {"domains", status.value("domains", json::array())},
            {"releases", releases},
            {"drain", status.contains("drain") && status["drain"].is_object() ? status["drain"]
                                                                              : json(nullptr)},
            // [acme] on the agent: each domain's certificate (absent otherwise).
            {"certificates", status.contains("certificates") && status["certificates"].is_array()
                                 ? status["certificates"]
                                 : json(nullptr)},
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
        if (s.command == "status" || s.command == "releases") {
            object["commit"] = string_or_null(row.commit);
            object["dirty"] = row.dirty;
            object["differs"] = row.differs;
        }
        hosts.push_back(std::move(object));
    }
    json event = {{"event", "summary"},         {"command", s.command}, {"ok", s.ok},
                  {"consistent", s.consistent}, {"hosts", hosts},       {"exit_code", s.exit_code}};
    if (s.command == "deploy")
        event["strategy"] = s.strategy;
    if (s.command == "deploy" || s.command == "rollback")
        event["elapsed_ms"] = s.elapsed_ms;
    return event;
}

std::unique_ptr<Printer> make_json_printer(std::ostream& out, std::ostream& err) {
    return std::make_unique<JsonPrinter>(out, err);
}

} // namespace cli::output
