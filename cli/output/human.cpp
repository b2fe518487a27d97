// Output for people: short "==>" lines, build and app output prefixed, colour on a TTY.

#include <cli/output/format.hpp>
#include <cli/output/printer.hpp>
#include <cli/output/progress.hpp>
#include <common/command_line.hpp>
#include <common/duration.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>
#include <ostream>
#include <unistd.h>
#include <variant>

namespace cli::output {

namespace {

using nlohmann::json;

enum class Color { none, bold, red, green, yellow, dim, blue };

const char* code_of(Color c) {
    switch (c) {
    case Color::bold:
        return "\033[1m";
    case Color::red:
        return "\033[1;31m";
    case Color::green:
        return "\033[1;32m";
    case Color::yellow:
        return "\033[33m";
    case Color::dim:
        return "\033[2m";
    case Color::blue:
        return "\033[1;34m";
    case Color::none:
        return "";
    }
    return "";
}

class HumanPrinter final : public Printer {
  public:
    HumanPrinter(HumanStyle style, std::ostream& out, std::ostream& err)
        : m_style(style), m_out(out), m_err(err) {
        if (m_style.live && !m_style.quiet)
            m_live = std::make_unique<LiveStatus>(
                m_out, m_style.color, [] { return terminal_width(STDOUT_FILENO).value_or(80); });
    }

    void set_several_hosts(bool several) override {
        m_style.show_host = several;
        if (several)
            m_live.reset(); // several hosts: GroupedOutput's phase line shows them all
    }
    void emit(const Event& event) override {
        std::visit([this](const auto& e) { render(e); }, event);
    }

  private:
    // One overload per kind of event: emit() does not compile without it.
    void render(const Version& e) {
        if (e.host.empty())
            m_out << "deployctl " << e.version << '\n';
        else
            line(m_out, "", fmt::format("deploy-agent {} at {}", e.version, e.host));
    }
    void render(const Completion& e) { m_out << e.script; }
    void render(const Warning& e) {
        if (!m_style.quiet)
            line(m_err, "", paint(Color::yellow, "warning:") + " " + e.message);
    }
    void render(const PackageSummary& s) {
        step("", fmt::format("Packaging {} at {}{} \"{}\" ({} files, {})", s.app,
                             short_commit(s.commit), s.dirty ? "+dirty" : "", s.message, s.files,
                             format_bytes(s.bytes)));
    }
    void render(const Uploading& e) {
        {
            std::lock_guard lock(m_state_mutex);
            m_upload_started[e.host] = std::chrono::steady_clock::now();
        }
        const UploadStats& s = e.stats;
        if (s.blobs_missing == 0)
            step(e.host,
                 fmt::format("Nothing to upload: all {} files are already on the agent", s.files));
        else
            step(e.host, fmt::format("Uploading {} new file{} ({}) of {}", s.blobs_missing,
                                     s.blobs_missing == 1 ? "" : "s", format_bytes(s.bytes_missing),
                                     s.files));
    }
    void render(const UploadProgress& e) {
        if (m_live)
            m_live->upload(e.host, e.bytes_sent, e.bytes_total);
    }
    void render(const Uploaded& e);
    void render(const Created& e) {
        remember_state(e.host, e.release, e.state);
        step(e.host, fmt::format("Release {}: {}", e.release, e.state));
        if (m_live)
            m_live->phase(e.host, e.release, e.state);
    }
    void render(const Unchanged& e) {
        if (m_live)
            m_live->finish(e.host);
        if (m_style.quiet) {
            line(m_out, host_prefix(e.host), e.url);
            return;
        }
        step(e.host,
             paint(Color::green, fmt::format("{} already serves {}{}", e.release,
                                             short_commit(e.commit), e.dirty ? "+dirty" : "")) +
                 "; nothing to do");
        line(m_out, host_prefix(e.host),
             paint(Color::dim, "    (deploy --force makes a new release anyway, e.g. to apply "
                               "changed env variables)"));
    }
    void render(const AgentEvent& e);
    void render(const Done& info) {
        if (m_live)
            m_live->finish(info.host);
        if (info.state != "PRODUCTION")
            return; // failures are reported as errors
        if (m_style.quiet) {
            line(m_out, host_prefix(info.host), info.url);
            return;
        }
        step(info.host,
             paint(Color::green, fmt::format("{} is live", info.release)) +
                 fmt::format(" at {} (took {})", info.url, format_elapsed(info.elapsed_ms)));
    }
    void render(const RolledBack& info) {
        if (m_style.quiet) {
            line(m_out, host_prefix(info.host), info.url);
            return;
        }
        std::string was = info.previous.empty() ? "" : fmt::format(" (was {})", info.previous);
        std::string at = info.url.empty() ? "" : " at " + info.url;
        if (info.unchanged) {
            step(info.host, fmt::format("{} is already live{}", info.release, at));
            return;
        }
        step(info.host,
             paint(Color::green, fmt::format("{} is live again", info.release)) + at + was);
        if (info.release_command_skipped)
            step(info.host,
                 fmt::format("note: {} has a release command; a rollback does not run it "
                             "again",
                             info.release));
    }
    void render(const Removed& e) { step(e.host, fmt::format("Deleted {}", e.release)); }
    void render(const Releases& e);
    void render(const Status& e);
    void render(const Apps& e);
    void render(const Processes& e);
    void render(const AppChanged& e);
    void render(const TrafficChanged& e);
    void render(const Canary& e);
    void render(const AppDestroyed& e);
    void render(const EnvList& e);
    void render(const EnvChanged& e);
    void render(const CronJobs& e);
    void render(const BuildCache& e);
    void render(const BuildCacheCleared& e) {
        const json& answer = *e.answer;
        step(e.host, fmt::format("Cleared the build cache of {} ({})", json_str(answer, "app"),
                                 format_bytes(answer.value("removed_bytes", std::uint64_t{0}))));
    }
    void render(const CronStarted& e) {
        const json& answer = *e.answer;
        step(e.host, fmt::format("Started cron job {} of {} (release {}); its output: "
                                 "deployctl logs --process cron.{} -f",
                                 json_str(answer, "job"), json_str(answer, "app"),
                                 json_str(answer, "release"), json_str(answer, "job")));
    }
    void render(const HookSecret& e);
    void render(const HookKey& e);
    void render(const HookDeliveries& e);
    void render(const Previews& e);
    void render(const Certificates& e);
    void render(const Agent& e);
    void render_disk(const Agent& e);
    void render_prune(const Agent& e);
    void render(const TokenCreated& e);
    void render(const Tokens& e);
    void render(const TokenRevoked& e) {
        line(m_err, host_prefix(e.host),
             fmt::format("token {} revoked at {}", json_str(*e.token, "id"),
                         json_str(*e.token, "revoked_at")));
    }
    void render(const Audit& e);
    void render(const LoggedIn& e) {
        line(m_err, "",
             fmt::format("{} accepted the token; {} its line in {}", e.host,
                         e.replaced ? "replaced" : "added", e.file));
    }
    void render(const InstallStep& e) {
        if (m_style.quiet)
            return;
        const auto mark = e.state == "done"        ? paint(Color::green, "✓")
                          : e.state == "unchanged" ? paint(Color::dim, "=")
                                                   : paint(Color::blue, "…");
        line(m_out, host_prefix(e.host), fmt::format("{} {:<8} {}", mark, e.step, e.detail));
        for (const auto& command : e.commands)
            line(m_out, host_prefix(e.host), "    would run: " + command);
    }
    void render(const Installed& e) {
        std::string text;
        if (e.dry_run)
            text = fmt::format("{}: --dry-run, nothing was changed", e.host);
        else if (e.changed)
            text = fmt::format("deploy-agent {} is installed on {} and answers ({:.1f} s)",
                               e.version, e.host, e.seconds);
        else
            text = fmt::format("deploy-agent {} on {}: nothing changed, it answers ({:.1f} s)",
                               e.version, e.host, e.seconds);
        line(m_out, "", text);
        if (!m_style.quiet)
            for (const auto& command : e.next)
                line(m_out, "", "  next: " + command);
    }
    // The bytes as they came (deployctl run writes them to its file descriptors itself).
    void render(const RunOutput& e) {
        std::lock_guard lock(m_write);
        auto& os = e.stream == "stderr" ? m_err : m_out;
        os << e.data;
        os.flush();
    }
    // The exit code says it; only a command that could not start is worth a line.
    void render(const RunExit& e) {
        if (e.error)
            line(m_err, host_prefix(e.host), paint(Color::red, "error:") + " " + *e.error);
    }
    void render(const Error& e) {
        if (m_live)
            m_live->finish(e.host);
        line(m_err, host_prefix(e.host), paint(Color::red, "error:") + " " + e.error.message);
    }
    void render(const Summary& s);
    void render_comparison(const Summary& s);
    void render(const Templates& e);
    void render(const InitSummary& s);

    std::string paint(Color c, std::string_view text) const {
        if (!m_style.color || c == Color::none)
            return std::string(text);
        return fmt::format("{}{}\033[0m", code_of(c), text);
    }
    std::string host_prefix(const std::string& host) const {
        return m_style.show_host && !host.empty() ? "[" + host + "] " : "";
    }
    // Every line goes through here: above the live status line on a terminal,
    // and one whole line at a time when several hosts deploy in parallel.
    void line(std::ostream& os, const std::string& prefix, const std::string& text) {
        if (m_live) {
            m_live->print(os, prefix + text);
            return;
        }
        std::lock_guard lock(m_write);
        os << prefix << text << '\n';
        os.flush();
    }
    void step(const std::string& host, const std::string& text) {
        if (!m_style.quiet)
            line(m_out, host_prefix(host), paint(Color::blue, "==>") + " " + text);
    }
    // The commit column of a release row: "3f2c1a0", or "3f2c1a0+dirty" (--dirty).
    static std::string commit_cell(const json& r) {
        return short_commit(json_str(r, "commit")) + (json_true(r, "dirty") ? "+dirty" : "");
    }
    static std::size_t commit_width(const json& list) {
        std::size_t width = 7;
        if (list.is_array())
            for (const auto& r : list)
                width = std::max(width, commit_cell(r).size());
        return width;
    }
    void release_line(const std::string& host, const json& r, std::size_t commit_width);
    // False when this release was already reported in this state.
    bool remember_state(const std::string& host, const std::string& release,
                        const std::string& state) {
        std::lock_guard lock(m_state_mutex);
        auto& last = m_last_state[host + " " + release];
        if (last == state)
            return false;
        last = state;
        return true;
    }

    HumanStyle m_style;
    std::ostream& m_out;
    std::ostream& m_err;
    std::mutex m_write;       // whole lines, when there is no live status line
    std::mutex m_state_mutex; // m_last_state, m_upload_started
    std::map<std::string, std::string> m_last_state;
    std::map<std::string, std::chrono::steady_clock::time_point> m_upload_started;
    std::unique_ptr<LiveStatus> m_live; // last: erased first
};

void HumanPrinter::render(const Uploaded& e) {
    const std::string& host = e.host;
    const UploadStats& s = e.stats;
    std::chrono::milliseconds took{};
    if (m_live)
        m_live->upload_done(host);
    {
        std::lock_guard lock(m_state_mutex);
        if (auto it = m_upload_started.find(host); it != m_upload_started.end())
            took = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - it->second);
    }
    if (s.blobs_missing == 0)
        return;
    const double rate = transfer_rate(s.bytes_sent, took);
    step(host, fmt::format(
                   "Uploaded {} in {}{}", format_bytes(s.bytes_sent), format_elapsed(took.count()),
                   rate > 0 ? fmt::format(" ({}/s)", format_bytes(static_cast<std::uint64_t>(rate)))
                            : ""));
}

void HumanPrinter::render(const AgentEvent& e) {
    const std::string& host = e.host;
    const json& event = *e.event;
    if (m_style.quiet)
        return;
    std::string kind = json_str(event, "event");
    if (kind == "state") {
        std::string msg = json_str(event, "message");
        std::string state = json_str(event, "state");
        if (!remember_state(host, json_str(event, "release"), state))
            return; // already said
        if (m_live && (state == "QUEUED" || state == "BUILDING" || state == "PROVISIONING")) {
            m_live->phase(host, json_str(event, "release"), state); // in place, no line
            return;
        }
        if (m_live)
            m_live->finish(host);
        Color c = state == "FAILED"       ? Color::red
                  : state == "PRODUCTION" ? Color::green
                                          : Color::none;
        step(host, fmt::format("{}: {}{}", json_str(event, "release"), paint(c, state),
                               msg.empty() ? "" : " (" + msg + ")"));
    } else if (kind == "log") {
        std::string stream = json_str(event, "stream");
        std::string ts = e.timestamps ? json_str(event, "ts") : std::string();
        line(m_out, host_prefix(host),
             paint(Color::dim, fmt::format("{}{:>6} |", ts.empty() ? "" : ts + " ", stream)) + " " +
                 json_str(event, "line"));
    } else if (kind == "access") {
        // One request: "TIME CLIENT METHOD HOST+PATH STATUS DURATION BYTES INSTANCE ID".
        const json& r = event.contains("request") ? event["request"] : event;
        auto number = [&r](const char* key) {
            auto it = r.is_object() ? r.find(key) : r.end();
            return it != r.end() && it->is_number() ? it->get<double>() : 0.0;
        };
        const int status = static_cast<int>(number("status"));
        const Color c = status >= 500 || status == 0 ? Color::red
                        : status >= 400              ? Color::yellow
                                                     : Color::none;
        const double ms = number("duration_ms");
        const auto bytes = static_cast<std::uint64_t>(number("bytes_out"));
        std::string instance = json_str(r, "instance");
        line(m_out, host_prefix(host),
             fmt::format(
                 "{} {} {} {}{} {} {} {} {} {}", paint(Color::dim, json_str(r, "time")),
                 json_str(r, "client"), json_str(r, "method"), json_str(r, "host"),
                 json_str(r, "path"), paint(c, status ? std::to_string(status) : std::string("-")),
                 ms < 1000 ? fmt::format("{:.1f}ms", ms) : fmt::format("{:.2f}s", ms / 1000),
                 format_bytes(bytes), instance.empty() ? "-" : instance,
                 paint(Color::dim, json_str(r, "request_id"))));
    } else if (kind == "health") {
        bool ok = event.value("ok", false);
        int status = event.value("status", 0);
        std::string msg = json_str(event, "message");
        std::string text = ok ? paint(Color::green, "ok") : paint(Color::yellow, "not ready");
        if (status)
            text += fmt::format(" (HTTP {})", status);
        if (!msg.empty())
            text += ": " + msg;
        line(m_out, host_prefix(host), paint(Color::dim, "health |") + " " + text);
    }
}

Color state_color(const std::string& state) {
    if (state == "PRODUCTION")
        return Color::green;
    if (state == "FAILED" || state == "UNREACHABLE" || state == "ERROR" ||
        state == "ROLLBACK_FAILED")
        return Color::red;
    if (state == "ROLLED_BACK" || state == "KEPT" || state == "NOT_STARTED")
        return Color::yellow;
    return Color::none;
}

// What a row's RELEASE column says: "v4", "v4 -> v3" after a rollback, "-" for none.
std::string release_cell(const SummaryRow& row) {
    std::string cell = row.release.empty() ? "-" : row.release;
    if (!row.release.empty() && !row.commit.empty()) // status/releases: what it serves
        cell += fmt::format(" {}{}", short_commit(row.commit), row.dirty ? "+dirty" : "");
    if (row.state == "ROLLED_BACK" && !row.previous.empty())
        cell += " -> " + row.previous;
    return cell;
}

// status/releases over several hosts: what a row's host serves ("v4 at 3f2c1a0+dirty").
std::string serves_cell(const SummaryRow& row) {
    if (row.release.empty())
        return "nothing";
    if (row.commit.empty())
        return row.release;
    return fmt::format("{} at {}{}", row.release, short_commit(row.commit),
                       row.dirty ? "+dirty" : "");
}

// "the commit and the tree differ" from SummaryRow::differs.
std::string differs_text(const std::vector<std::string>& parts) {
    std::vector<std::string> names;
    for (const auto& part : parts) {
        if (part == "release")
            return ""; // "serves nothing" says it
        if (part == "unknown")
            return "other release ids, made before agents recorded digests: their content "
                   "cannot be compared";
        names.push_back(part == "config" ? "deploy.toml" : part);
    }
    std::string text = "the ";
    for (std::size_t i = 0; i < names.size(); ++i)
        text += (i == 0 ? "" : i + 1 == names.size() ? " and the " : ", the ") + names[i];
    return text + (names.size() == 1 ? " differs" : " differ");
}

void HumanPrinter::render(const Summary& s) {
    if (m_style.quiet && s.ok && s.consistent)
        return;
    const bool deploy = s.command == "deploy" || s.command == "rollback";
    std::size_t host_width = 4, release_width = deploy ? 7 : 10, state_width = 5;
    for (const auto& row : s.rows) {
        host_width = std::max(host_width, row.host.size());
        release_width = std::max(release_width, release_cell(row).size());
        state_width = std::max(state_width, row.state.size());
    }
    const auto cells = [&](const std::string& host, const std::string& release,
                           const std::string& state, const std::string& last) {
        return fmt::format("{:<{}}  {:<{}}  {:<{}}  {}", host, host_width, release, release_width,
                           state, state_width, last);
    };
    m_out << '\n';
    line(m_out, "",
         paint(Color::bold,
               cells("HOST", deploy ? "RELEASE" : "PRODUCTION", "STATE", deploy ? "TIME" : "")));
    for (const auto& row : s.rows) {
        std::string last = row.elapsed_ms ? format_elapsed(*row.elapsed_ms) : "";
        if (!row.note.empty())
            last += (last.empty() ? "" : "  ") + row.note;
        std::string state = fmt::format("{:<{}}", row.state, state_width);
        line(m_out, "",
             fmt::format("{:<{}}  {:<{}}  {}  {}", row.host, host_width, release_cell(row),
                         release_width, paint(state_color(row.state), state), last));
    }
    if (!deploy) {
        render_comparison(s);
        return;
    }
    std::size_t live = 0;
    std::size_t canaries = 0; // deploy --canary: live next to PRODUCTION
    for (const auto& row : s.rows) {
        canaries += row.state == "CANARY";
        live += row.state == "PRODUCTION" || row.state == "QUEUED" || row.state == "KEPT" ||
                row.state == "CANARY";
    }
    if (s.command == "rollback") {
        // The same release everywhere: under one id, or the same content under several.
        const bool one_id = std::all_of(s.rows.begin(), s.rows.end(), [&](const SummaryRow& r) {
            return r.release == s.rows.front().release;
        });
        std::string verdict =
            fmt::format("{} of {} hosts on {} (took {})", live, s.rows.size(),
                        one_id && !s.rows.empty() ? s.rows.front().release : "the same release",
                        format_elapsed(s.elapsed_ms));
        step("", s.ok ? paint(Color::green, verdict) : paint(Color::red, verdict));
        return;
    }
    std::string verdict = fmt::format("{} of {} hosts live{} ({}, took {})", live, s.rows.size(),
                                      canaries > 0 && canaries == live ? " with the canary" : "",
                                      s.strategy, format_elapsed(s.elapsed_ms));
    step("", s.ok ? paint(Color::green, verdict) : paint(Color::red, verdict));
}

// After the table of status/releases over several hosts: in sync, or which host serves
// what and what differs from the first reachable host.
void HumanPrinter::render_comparison(const Summary& s) {
    const SummaryRow* first = nullptr;
    for (const auto& row : s.rows)
        if (row.state == "PRODUCTION" || row.state == "NONE") {
            first = &row;
            break;
        }
    if (!first)
        return;
    if (s.consistent) {
        if (!first->release.empty() && !m_style.quiet)
            step("",
                 fmt::format("in sync: every host that answered serves {}{}",
                             first->commit.empty() ? first->release : short_commit(first->commit),
                             first->dirty ? "+dirty" : ""));
        return;
    }
    line(m_err, "",
         paint(Color::yellow, "warning:") +
             " the hosts differ: they do not serve the same release");
    for (const auto& row : s.rows)
        if (!row.differs.empty())
            line(m_err, "",
                 fmt::format("  {} serves {}, {} {}{}", row.host, serves_cell(row), first->host,
                             serves_cell(*first),
                             row.differs == std::vector<std::string>{"release"}
                                 ? ""
                                 : ": " + differs_text(row.differs)));
}

void HumanPrinter::release_line(const std::string& host, const json& r, std::size_t commit_width) {
    std::string state = json_str(r, "state");
    Color c = state == "PRODUCTION" ? Color::green : state == "FAILED" ? Color::red : Color::none;
    std::string err = json_str(r, "error");
    line(m_out, host_prefix(host),
         fmt::format("{:<6} {} {:<19}  {:<{}}  {}{}", json_str(r, "id"),
                     paint(c, fmt::format("{:<12}", state)), short_time(json_str(r, "created_at")),
                     commit_cell(r), commit_width, json_str(r, "message"),
                     err.empty() ? "" : "  (" + err + ")"));
    if (json_true(r, "standby")) // [deploy] standby: still running, unrouted
        line(m_out, host_prefix(host),
             paint(Color::dim, "       standby: still running; a rollback to it is a switch"));
}

void HumanPrinter::render(const Releases& e) {
    const std::string& host = e.host;
    const json& list = *e.list;
    if (!list.is_array() || list.empty()) {
        line(m_out, host_prefix(host), "no releases yet");
        return;
    }
    line(m_out, host_prefix(host),
         paint(Color::bold, fmt::format("{:<6} {:<12} {:<19}  {:<{}}  {}", "ID", "STATE", "CREATED",
                                        "COMMIT", commit_width(list), "MESSAGE")));
    for (const auto& r : list) {
        release_line(host, r, commit_width(list));
        if (auto served = served_text(r); !served.empty())
            line(m_out, host_prefix(host), paint(Color::dim, "       " + served));
    }
}

// "3d04h", "2h05m", "4m10s", "12s".
std::string uptime_text(std::int64_t s) {
    if (s >= 86400)
        return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
    if (s >= 3600)
        return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
    if (s >= 60)
        return fmt::format("{}m{:02}s", s / 60, s % 60);
    return fmt::format("{}s", s);
}

void HumanPrinter::render(const Processes& e) {
    const json& answer = *e.list;
    const json empty = json::array();
    const json& list =
        answer.is_object() && answer.contains("processes") && answer["processes"].is_array()
            ? answer["processes"]
            : empty;
    line(m_out, host_prefix(e.host),
         fmt::format("{} {}{}", json_str(answer, "app"), json_str(answer, "release"),
                     json_true(answer, "stopped") ? " (stopped: deployctl start starts it)" : ""));
    if (answer.is_object() && answer.contains("scale") && answer["scale"].is_object() &&
        !answer["scale"].empty()) {
        std::string counts;
        for (const auto& [name, count] : answer["scale"].items())
            counts += fmt::format("{}{}={}", counts.empty() ? "" : " ", name,
                                  count.is_number_integer() ? count.get<int>() : 0);
        line(m_out, host_prefix(e.host), "scale: " + counts);
    }
    if (list.empty()) {
        line(m_out, host_prefix(e.host),
             json_str(answer, "engine") == "static"
                 ? "no processes: a [static] site is served by deploy-proxy"
                 : "no processes run (scaled to 0: deployctl scale web=1 starts web again)");
        return;
    }
    line(m_out, host_prefix(e.host),
         paint(Color::bold, fmt::format("{:<16} {:<9} {:<28} {:>7} {:>8} {:>10} {:>6}", "PROCESS",
                                        "STATE", "PID", "UPTIME", "RESTARTS", "RSS", "CPU")));
    for (const auto& p : list) {
        const std::string state = json_str(p, "state");
        const Color c = state == "running"   ? Color::green
                        : state == "crashed" ? Color::red
                                             : Color::yellow;
        const auto pid = p.value("pid", 0);
        std::string where = pid > 0 ? std::to_string(pid) : "-";
        if (const auto container = json_str(p, "container"); !container.empty())
            where += " " + container;
        const bool running = state == "running";
        line(m_out, host_prefix(e.host),
             fmt::format("{:<16} {} {:<28} {:>7} {:>8} {:>10} {:>6}",
                         json_str(p, "process") + "." + std::to_string(p.value("instance", 1)),
                         paint(c, fmt::format("{:<9}", state)), where,
                         running && p.contains("uptime_s") && p["uptime_s"].is_number()
                             ? uptime_text(p["uptime_s"].get<std::int64_t>())
                             : "-",
                         p.value("restarts", 0),
                         running ? format_bytes(p.value("rss_bytes", std::uint64_t{0})) : "-",
                         running ? fmt::format("{:.1f}%", p.value("cpu_percent", 0.0)) : "-"));
        if (const auto exit = json_str(p, "last_exit"); !exit.empty())
            line(m_out, host_prefix(e.host), paint(Color::dim, "                 last: " + exit));
    }
}

// "running", "sleeping", "stopped", "failed", "no_release" as people read them.
std::string app_state_text(const std::string& state) {
    return state == "no_release" ? "no release" : state;
}

void HumanPrinter::render(const Apps& e) {
    const json& list = *e.list;
    if (!list.is_array() || list.empty()) {
        line(m_out, host_prefix(e.host), "no apps on this agent yet (deployctl deploy adds one)");
        return;
    }
    std::size_t width = 4;
    for (const auto& app : list)
        width = std::max(width, json_str(app, "app").size());
    line(m_out, host_prefix(e.host),
         paint(Color::bold, fmt::format("{:<{}}  {:<10}  {:<10}  {}", "NAME", width, "PRODUCTION",
                                        "STATE", "URL")));
    for (const auto& app : list) {
        std::string state = json_str(app, "state");
        Color c = state == "running"                        ? Color::green
                  : state == "failed" || state == "stopped" ? Color::yellow
                                                            : Color::none;
        std::string production = json_str(app, "production");
        line(m_out, host_prefix(e.host),
             fmt::format("{:<{}}  {:<10}  {}  {}", json_str(app, "app"), width,
                         production.empty() ? "-" : production,
                         paint(c, fmt::format("{:<10}", app_state_text(state))),
                         json_str(app, "url")));
    }
}

void HumanPrinter::render(const Canary& e) {
    const json& a = *e.answer;
    const std::string app = json_str(a, "app");
    const std::string release = json_str(a, "release");
    if (e.action == "promote") {
        const std::string previous = json_str(a, "previous");
        step(e.host, previous.empty()
                         ? fmt::format("Canary {} of {} promoted: it is PRODUCTION", release, app)
                         : fmt::format("Canary {} of {} promoted: it is PRODUCTION; {} drains "
                                       "and becomes INACTIVE",
                                       release, app, previous));
        return;
    }
    if (e.action == "abort") {
        step(e.host, fmt::format("Canary {} of {} aborted: it is stopped and FAILED ({})", release,
                                 app, json_str(a, "error")));
        return;
    }
    const int percent = a.value("percent", 0);
    std::string head = fmt::format("{}: canary {} takes {}% of the traffic, PRODUCTION {} {}%", app,
                                   release, percent, json_str(a, "production"), 100 - percent);
    if (auto at = a.find("auto_at"); at != a.end() && at->is_number_integer())
        head += fmt::format(" (judged at {} unix time, max error rate +{} points)",
                            at->get<long long>(), a.value("max_error_rate", 1.0));
    line(m_out, host_prefix(e.host), head);
    line(
        m_out, host_prefix(e.host),
        fmt::format("{:<11} {:<8} {:>9} {:>8} {:>9}", "SIDE", "RELEASE", "REQUESTS", "5XX", "P95"));
    const auto sides = a.find("sides");
    for (const char* side : {"production", "canary"}) {
        if (sides == a.end() || !sides->contains(side))
            continue;
        const json& s = (*sides)[side];
        const auto p95 = s.find("p95_ms");
        line(m_out, host_prefix(e.host),
             fmt::format("{:<11} {:<8} {:>9} {:>7.2f}% {:>9}", side, json_str(s, "release"),
                         s.value("requests", 0ull), s.value("error_rate", 0.0),
                         p95 != s.end() && p95->is_number()
                             ? fmt::format("{:.1f}ms", p95->get<double>())
                             : std::string("-")));
    }
}

void HumanPrinter::render(const AppChanged& e) {
    const json& a = *e.answer;
    const std::string app = json_str(a, "app");
    const std::string release = json_str(a, "release");
    const bool changed = a.value("changed", true);
    std::string pid;
    if (auto it = a.find("pid"); it != a.end() && it->is_number_integer())
        pid = fmt::format(" (pid {})", it->get<long long>());
    if (e.action == "stop")
        step(e.host, changed ? fmt::format("Stopped {} {}; the proxy answers 503 until "
                                           "deployctl start (or a deploy)",
                                           app, release)
                             : fmt::format("{} was already stopped", app));
    else if (e.action == "start")
        step(e.host, changed ? paint(Color::green, fmt::format("Started {} {}", app, release)) + pid
                             : fmt::format("{} {} is already running", app, release));
    else
        step(e.host, paint(Color::green, fmt::format("Restarted {} {}", app, release)) + pid);
}

void HumanPrinter::render(const TrafficChanged& e) {
    const json& a = *e.answer;
    const std::string app = json_str(a, "app");
    const json maintenance = a.value("maintenance", json());
    const json paused = a.value("paused", json());
    auto retry = [&] {
        const long long seconds =
            maintenance.is_object() ? maintenance.value("retry_after", 0LL) : 0;
        return seconds ? ", Retry-After " + common::format_duration(std::chrono::seconds(seconds))
                       : std::string();
    };
    auto held = [&] {
        return common::format_duration(
            std::chrono::milliseconds(paused.is_object() ? paused.value("timeout_ms", 0LL) : 0));
    };
    if (e.action == "on")
        step(e.host, paint(Color::yellow, fmt::format("Maintenance mode on for {}", app)) +
                         fmt::format(": deploy-proxy answers 503{} until deployctl maintenance off",
                                     retry()));
    else if (e.action == "off")
        step(e.host, paint(Color::green, fmt::format("Maintenance mode off for {}", app)) +
                         ": its requests are served again");
    else if (e.action == "pause")
        step(e.host, paint(Color::yellow, fmt::format("Paused {}", app)) +
                         fmt::format(": deploy-proxy holds its new requests (503 after {}) until "
                                     "deployctl resume",
                                     held()));
    else if (e.action == "resume")
        step(e.host, paint(Color::green, fmt::format("Resumed {}", app)) +
                         ": held requests go on in the order they came");
    else {
        step(e.host, maintenance.is_object()
                         ? paint(Color::yellow, fmt::format("{}: maintenance on", app)) +
                               fmt::format(" since {}{}{}", json_str(maintenance, "since"), retry(),
                                           json_str(maintenance, "message").empty()
                                               ? std::string()
                                               : " (\"" + json_str(maintenance, "message") + "\")")
                         : fmt::format("{}: maintenance off", app));
        if (paused.is_object())
            step(e.host, paint(Color::yellow, fmt::format("{}: paused", app)) +
                             fmt::format(" since {} (requests held up to {})",
                                         json_str(paused, "since"), held()));
    }
}

void HumanPrinter::render(const AppDestroyed& e) {
    const json& a = *e.answer;
    std::string ids;
    for (const auto& id : a.value("releases", json::array()))
        if (id.is_string())
            ids += (ids.empty() ? "" : " ") + id.get<std::string>();
    const int kept = a.value("blobs_kept", 0);
    step(e.host,
         fmt::format(
             "Destroyed {}: {} ({}), its logs, variables and routes; {} blob{} removed{}",
             json_str(a, "destroyed"), ids.empty() ? "no releases" : "releases " + ids,
             ids.empty() ? "nothing ran" : "stopped and deleted", a.value("blobs_removed", 0),
             a.value("blobs_removed", 0) == 1 ? "" : "s",
             kept ? fmt::format(", {} kept (another app or a deploy in progress uses them)", kept)
                  : ""));
    std::string previews;
    for (const auto& name : a.value("previews", json::array()))
        if (name.is_string())
            previews += (previews.empty() ? "" : " ") + name.get<std::string>();
    if (!previews.empty())
        step(e.host, "Destroyed its preview environments too: " + previews);
}

void HumanPrinter::render(const EnvList& e) {
    const std::string& host = e.host;
    const json& answer = *e.answer;
    auto vars = answer.value("vars", json::array());
    if (!vars.is_array() || vars.empty()) {
        line(m_out, host_prefix(host),
             "no variables set on the agent for " + json_str(answer, "app"));
        return;
    }
    std::size_t width = 4;
    for (const auto& var : vars)
        width = std::max(width, json_str(var, "name").size());
    line(m_out, host_prefix(host),
         paint(Color::bold, fmt::format("{:<{}}  {}", "NAME", width, "VALUE")));
    for (const auto& var : vars) {
        bool secret = var.value("secret", false);
        line(m_out, host_prefix(host),
             fmt::format("{:<{}}  {}", json_str(var, "name"), width,
                         secret ? paint(Color::yellow, "(secret)") : json_str(var, "value")));
    }
}

void HumanPrinter::render(const HookSecret& e) {
    const json& answer = *e.answer;
    const std::string app = json_str(answer, "app");
    line(m_err, host_prefix(e.host),
         fmt::format("webhook secret of {}{} (give it to the provider with the URL of its "
                     "provider below, on this agent's API address):",
                     app, answer.value("rotated", false) ? ", new" : ""));
    line(m_out, "", json_str(answer, "secret"));
    const auto paths = answer.value("paths", json::object());
    for (const auto& [provider, path] : paths.items())
        line(m_err, host_prefix(e.host),
             fmt::format("  {:<7} POST {}{}", provider, e.host,
                         path.is_string() ? path.get<std::string>() : ""));
}

void HumanPrinter::render(const HookKey& e) {
    const json& answer = *e.answer;
    line(m_err, host_prefix(e.host),
         fmt::format("deploy key of {}{} ({}): add it to the repository's deploy keys, read "
                     "access (GitHub and Gitea: Settings > Deploy keys; GitLab: Settings > "
                     "Repository > Deploy keys):",
                     json_str(answer, "app"), answer.value("rotated", false) ? ", new" : "",
                     json_str(answer, "fingerprint")));
    line(m_out, "", json_str(answer, "public_key"));
    if (answer.value("hosts_forgotten", false))
        line(m_err, host_prefix(e.host),
             "  host keys forgotten: the next fetch from each server trusts its key");
    for (const auto& host : answer.value("hosts", json::array()))
        line(m_err, host_prefix(e.host),
             fmt::format("  trusts {} {} {} (since {})", json_str(host, "host"),
                         json_str(host, "key_type"), json_str(host, "fingerprint"),
                         json_str(host, "added")));
}

void HumanPrinter::render(const HookDeliveries& e) {
    const json& answer = *e.answer;
    auto rows = answer.value("deliveries", json::array());
    if (!rows.is_array() || rows.empty()) {
        line(m_out, host_prefix(e.host), "no webhook deliveries for " + json_str(answer, "app"));
        return;
    }
    line(m_out, host_prefix(e.host),
         paint(Color::bold, fmt::format("{:<24}  {:<14}  {:<12}  {:<8}  {}", "TIME", "EVENT",
                                        "COMMIT", "RELEASE", "RESULT")));
    for (const auto& row : rows) {
        std::string result = json_str(row, "result");
        if (const auto state = json_str(row, "release_state"); !state.empty())
            result += " (" + state + ")";
        if (const auto detail = json_str(row, "detail"); !detail.empty())
            result += ": " + detail;
        const auto commit = json_str(row, "commit");
        line(m_out, host_prefix(e.host),
             fmt::format("{:<24}  {:<14}  {:<12}  {:<8}  {}", json_str(row, "time"),
                         json_str(row, "provider") + " " + json_str(row, "event"),
                         commit.empty() ? "-" : commit.substr(0, 12),
                         json_str(row, "release").empty() ? "-" : json_str(row, "release"),
                         result));
    }
}

void HumanPrinter::render(const Previews& e) {
    const json& answer = *e.answer;
    auto rows = answer.value("previews", json::array());
    if (!rows.is_array() || rows.empty()) {
        line(m_out, host_prefix(e.host),
             "no preview environments for " + json_str(answer, "app") +
                 " (a pull request makes one when the serving deploy.toml has [preview])");
        return;
    }
    line(m_out, host_prefix(e.host),
         paint(Color::bold, fmt::format("{:<5}  {:<20}  {:<12}  {:<8}  {:<10}  {}", "PR", "APP",
                                        "COMMIT", "RELEASE", "STATE", "URL")));
    for (const auto& row : rows) {
        std::string where;
        if (const auto url = json_str(row, "url"); !url.empty())
            where = url;
        for (const auto& domain : row.value("domains", json::array()))
            if (domain.is_string())
                where += (where.empty() ? "" : " ") + domain.get<std::string>();
        if (const auto detail = json_str(row, "detail"); !detail.empty())
            where += (where.empty() ? "" : "  ") + detail;
        const auto commit = json_str(row, "commit");
        line(m_out, host_prefix(e.host),
             fmt::format("{:<5}  {:<20}  {:<12}  {:<8}  {:<10}  {}",
                         "#" + (row.contains("number") && row["number"].is_number_integer()
                                    ? std::to_string(row["number"].get<int>())
                                    : std::string("?")),
                         json_str(row, "app"), commit.empty() ? "-" : commit.substr(0, 12),
                         json_str(row, "release").empty() ? "-" : json_str(row, "release"),
                         json_str(row, "state"), where.empty() ? "-" : where));
    }
}

void HumanPrinter::render(const Certificates& e) {
    const json& answer = *e.answer;
    auto rows = answer.value("certificates", json::array());
    if (!answer.value("acme", false) && (!rows.is_array() || rows.empty())) {
        line(m_out, host_prefix(e.host),
             "ACME is off on this agent: it serves only the certificates in agent.toml "
             "([[proxy.certificates]]); add [acme] to get them by themselves (docs/tls.md)");
        return;
    }
    if (!rows.is_array() || rows.empty()) {
        line(m_out, host_prefix(e.host),
             "no certificates yet: no routed domain can have one (a deploy.toml target's "
             "domains, not *.localhost nor IP addresses)");
        return;
    }
    auto text = [](const json& row, const char* key) {
        const auto value = json_str(row, key);
        return value.empty() ? std::string("-") : value;
    };
    line(m_out, host_prefix(e.host),
         paint(Color::bold,
               fmt::format("{:<30}  {:<15}  {:<22}  {:<20}  {:<20}  {}", "NAME", "STATE", "ISSUER",
                           "EXPIRES", "NEXT ATTEMPT", "LAST RENEWAL")));
    for (const auto& row : rows) {
        const auto state = json_str(row, "state");
        const auto color = state == "valid"                          ? Color::green
                           : state == "pending" || state == "unused" ? Color::dim
                                                                     : Color::red;
        std::string name = json_str(row, "name");
        if (row.value("on_demand", false))
            name += " (on-demand)";
        line(m_out, host_prefix(e.host),
             fmt::format("{:<30}  {}  {:<22}  {:<20}  {:<20}  {}", name,
                         paint(color, fmt::format("{:<15}", state)), text(row, "issuer"),
                         text(row, "not_after"), text(row, "next_attempt"),
                         text(row, "last_renewal")));
        if (const auto error = json_str(row, "last_error"); !error.empty())
            line(m_out, host_prefix(e.host), "    last error: " + error);
    }
}

void HumanPrinter::render(const BuildCache& e) {
    const json& answer = *e.answer;
    auto entries = answer.value("entries", json::array());
    const auto app = json_str(answer, "app");
    if (!entries.is_array() || entries.empty()) {
        line(m_out, host_prefix(e.host), "the build cache of " + app + " is empty");
        return;
    }
    std::size_t width = 4;
    auto name_of = [](const json& entry) {
        std::string name = json_str(entry, "name");
        if (json_str(entry, "kind") == "build" || !json_str(entry, "release").empty())
            name = name.substr(0, 12) + " (" + json_str(entry, "release") + ")";
        return name;
    };
    for (const auto& entry : entries)
        width = std::max(width, name_of(entry).size());
    line(m_out, host_prefix(e.host),
         paint(Color::bold, fmt::format("{:<{}}  {:<5}  {:>10}  {}", "NAME", width, "KIND", "SIZE",
                                        "LAST USED")));
    for (const auto& entry : entries)
        line(m_out, host_prefix(e.host),
             fmt::format("{:<{}}  {:<5}  {:>10}  {}", name_of(entry), width,
                         json_str(entry, "kind"),
                         format_bytes(entry.value("bytes", std::uint64_t{0})),
                         json_str(entry, "last_used").substr(0, 19)));
    line(m_out, host_prefix(e.host),
         fmt::format("{}: cache {} of at most {} ([build] cache_max); builds kept for reuse {}",
                     app, format_bytes(answer.value("bytes", std::uint64_t{0})),
                     format_bytes(answer.value("max", std::uint64_t{0})),
                     format_bytes(answer.value("builds_bytes", std::uint64_t{0}))));
}

void HumanPrinter::render(const CronJobs& e) {
    const std::string& host = e.host;
    const json& answer = *e.answer;
    auto jobs = answer.value("jobs", json::array());
    if (!jobs.is_array() || jobs.empty()) {
        line(m_out, host_prefix(host),
             "no [[cron]] jobs in the PRODUCTION release of " + json_str(answer, "app"));
        return;
    }
    std::size_t width = 4;
    std::size_t schedule_width = 8;
    auto schedule_of = [](const json& job) {
        std::string schedule = json_str(job, "schedule");
        if (json_str(job, "timezone") != "UTC")
            schedule += " (" + json_str(job, "timezone") + ")";
        return schedule;
    };
    for (const auto& job : jobs) {
        width = std::max(width, json_str(job, "name").size());
        schedule_width = std::max(schedule_width, schedule_of(job).size());
    }
    line(m_out, host_prefix(host),
         paint(Color::bold, fmt::format("{:<{}}  {:<{}}  {:<20}  {}", "NAME", width, "SCHEDULE",
                                        schedule_width, "NEXT RUN", "LAST RUN")));
    for (const auto& job : jobs) {
        std::string next = json_str(job, "next_run");
        if (next.empty())
            next = "-";
        std::string last = "never";
        if (job.contains("last_run") && job["last_run"].is_object()) {
            const auto& run = job["last_run"];
            const std::string outcome = json_str(run, "outcome");
            last = fmt::format("{} {}", json_str(run, "started"), outcome);
            if (outcome != "skipped")
                last += fmt::format(" (exit {}, {}ms)", run.value("exit", 0),
                                    run.value("duration_ms", 0));
        }
        if (job.value("running", false))
            last += " " + paint(Color::yellow, "running now");
        std::string row = fmt::format("{:<{}}  {:<{}}  {:<20}  {}", json_str(job, "name"), width,
                                      schedule_of(job), schedule_width, next, last);
        if (const std::string inactive = json_str(job, "inactive"); !inactive.empty())
            row += paint(Color::dim, " (not here: " + inactive + ")");
        line(m_out, host_prefix(host), row);
    }
}

void HumanPrinter::render(const EnvChanged& e) {
    const std::string& host = e.host;
    const json& answer = *e.answer;
    bool set = answer.contains("set");
    std::string names;
    for (const auto& name : answer.value(set ? "set" : "unset", json::array()))
        names += (names.empty() ? "" : ", ") + (name.is_string() ? name.get<std::string>() : "");
    step(host,
         fmt::format(
             "{} {} for {}; takes effect {}", set ? "Set" : "Unset", names, json_str(answer, "app"),
             answer.value(
                 "takes_effect",
                 "when the app next starts (deployctl restart, deploy --force or rollback)")));
}

std::uint64_t json_bytes(const json& object, const char* key) {
    auto it = object.find(key);
    return it != object.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
}

void HumanPrinter::render(const Status& e) {
    const std::string& host = e.host;
    const json& status = *e.status;
    std::string production = json_str(status, "production");
    std::string head = paint(Color::bold, json_str(status, "app"));
    if (production.empty())
        head += ": nothing in production";
    else if (json_str(status, "state") == "stopped")
        head += fmt::format(": {} is {} (deployctl start serves it again)", production,
                            paint(Color::yellow, "stopped"));
    else if (json_str(status, "state") == "sleeping")
        head += fmt::format(": {} is {} ([deploy] idle_stop; the next request starts it) at {}",
                            production, paint(Color::dim, "sleeping"), json_str(status, "url"));
    else
        head += fmt::format(": {} is live at {}", paint(Color::green, production),
                            json_str(status, "url"));
    if (auto previous = json_str(status, "previous"); !previous.empty())
        head += paint(Color::dim, fmt::format(" (rollback goes back to {})", previous));
    line(m_out, host_prefix(host), head);
    if (auto it = status.find("releases"); it != status.end() && it->is_array())
        for (const auto& r : *it)
            release_line(host, r, commit_width(*it));
    // [acme]: a domain without a valid certificate is served over plain HTTP.
    if (auto it = status.find("certificates"); it != status.end() && it->is_array())
        for (const auto& c : *it) {
            const auto state = json_str(c, "state");
            if (state == "valid")
                line(m_out, host_prefix(host),
                     fmt::format("https://{}: certificate valid until {}", json_str(c, "name"),
                                 json_str(c, "not_after")));
            else
                line(m_out, host_prefix(host),
                     paint(Color::yellow,
                           fmt::format("warning: certificate for {} {}{}{} (deployctl certs)",
                                       json_str(c, "name"), state,
                                       json_str(c, "last_error").empty()
                                           ? ""
                                           : ": " + json_str(c, "last_error"),
                                       state == "failed" || state == "pending"
                                           ? "; served over plain HTTP meanwhile"
                                           : "")));
        }
    // [logs] drain: where the lines go, and whether any were lost.
    if (auto it = status.find("drain"); it != status.end() && it->is_object()) {
        const json& d = *it;
        const auto dropped = json_bytes(d, "dropped");
        std::string state = d.value("connected", false) ? paint(Color::green, "connected")
                                                        : paint(Color::yellow, "not connected");
        if (auto error = json_str(d, "last_error"); !error.empty() && !d.value("connected", false))
            state += " (" + error + ")";
        line(m_out, host_prefix(host),
             fmt::format("drain {}: {}, {} delivered, {} queued{}", json_str(d, "url"), state,
                         json_bytes(d, "delivered"), format_bytes(json_bytes(d, "queued_bytes")),
                         dropped ? paint(Color::red, fmt::format(", {} dropped (the queue was "
                                                                 "full)",
                                                                 dropped))
                                 : std::string()));
    }
}

void HumanPrinter::render(const Agent& e) {
    const json& answer = *e.answer;
    const std::string prefix = host_prefix(e.host);
    if (e.query == AgentQuery::disk)
        return render_disk(e);
    if (e.query == AgentQuery::prune)
        return render_prune(e);
    if (e.query == AgentQuery::ping) {
        line(m_out, prefix,
             fmt::format("{} deploy-agent {}", paint(Color::green, "ok"),
                         json_str(answer, "version")));
        return;
    }
    std::string engine = json_str(answer, "engine");
    if (auto version = json_str(answer, "engine_version"); !version.empty())
        engine += " " + version;
    std::string apps;
    if (auto it = answer.find("apps"); it != answer.end() && it->is_array())
        for (const auto& app : *it)
            if (app.is_string())
                apps += (apps.empty() ? "" : ", ") + app.get<std::string>();
    line(m_out, prefix, "deploy-agent " + json_str(answer, "version"));
    line(m_out, prefix, "  engine    " + engine);
    std::string proxy = "http://" + json_str(answer, "proxy_listen");
    if (auto https = json_str(answer, "proxy_https_listen"); !https.empty())
        proxy += ", https://" + https;
    line(m_out, prefix, "  proxy     " + proxy);
    line(m_out, prefix, "  data dir  " + json_str(answer, "data_dir"));
    if (auto fingerprint = json_str(answer, "tls_fingerprint"); !fingerprint.empty())
        line(m_out, prefix, "  api cert  " + fingerprint);
    line(m_out, prefix, "  apps      " + (apps.empty() ? std::string("(none)") : apps));
}

// deployctl agent df: the disk, the blobs, then a table of the apps.
void HumanPrinter::render_disk(const Agent& e) {
    const json& answer = *e.answer;
    const std::string prefix = host_prefix(e.host);
    const auto free = json_bytes(answer, "free");
    const auto reserve = json_bytes(answer, "reserve");
    line(m_out, prefix,
         fmt::format("data dir  {} ({} in all)", json_str(answer, "data_dir"),
                     format_bytes(json_bytes(answer, "total"))));
    std::string disk =
        fmt::format("{} free of {}", format_bytes(free), format_bytes(json_bytes(answer, "size")));
    if (reserve > 0)
        disk += fmt::format(", {} kept free (--min-free)", format_bytes(reserve));
    if (free < reserve)
        disk = paint(Color::red, disk + ": deploys are refused");
    line(m_out, prefix, "disk      " + disk);
    // A file system with a fixed count of inodes (ext4): many small files can use them up.
    if (const auto files = json_bytes(answer, "files"); files > 0) {
        const auto free_files = json_bytes(answer, "free_files");
        const auto file_reserve = json_bytes(answer, "file_reserve");
        std::string inodes = fmt::format("{} free of {}", free_files, files);
        if (file_reserve > 0)
            inodes += fmt::format(", {} kept free", file_reserve);
        if (free_files < file_reserve)
            inodes = paint(Color::red, inodes + ": deploys are refused");
        line(m_out, prefix, "inodes    " + inodes);
    }
    const json blobs = answer.value("blobs", json::object());
    line(m_out, prefix,
         fmt::format("blobs     {} stored, {} ({} used by no release: deployctl agent prune)",
                     json_bytes(blobs, "count"), format_bytes(json_bytes(blobs, "bytes")),
                     format_bytes(json_bytes(blobs, "unused"))));
    const json images = answer.value("images", json::object());
    const bool containers = json_bytes(images, "bytes") > 0;
    if (containers)
        line(m_out, prefix,
             fmt::format("images    {} in the container engine ({} used by no release: deployctl "
                         "agent prune)",
                         format_bytes(json_bytes(images, "bytes")),
                         format_bytes(json_bytes(images, "unused"))));
    auto apps = answer.find("apps");
    if (apps == answer.end() || !apps->is_array() || apps->empty())
        return;
    std::size_t width = 3;
    for (const auto& app : *apps)
        width = std::max(width, json_str(app, "app").size());
    // IMAGES only where a container engine holds some.
    auto row = [&](std::string app, std::string releases, std::string blobs, std::string logs,
                   std::string cache, std::string images) {
        return fmt::format("{:<{}}  {:>10}  {:>10}  {:>10}  {:>11}", app, width, releases, blobs,
                           logs, cache) +
               (containers ? fmt::format("  {:>10}", images) : std::string());
    };
    line(m_out, prefix,
         paint(Color::bold, row("APP", "RELEASES", "BLOBS", "LOGS", "BUILD CACHE", "IMAGES")));
    for (const auto& app : *apps)
        line(m_out, prefix,
             row(json_str(app, "app"), format_bytes(json_bytes(app, "releases")),
                 format_bytes(json_bytes(app, "blobs")), format_bytes(json_bytes(app, "logs")),
                 format_bytes(json_bytes(app, "build_cache")),
                 format_bytes(json_bytes(app, "images"))));
}

// deployctl agent prune [--dry-run]: what went (or would go).
void HumanPrinter::render_prune(const Agent& e) {
    const json& answer = *e.answer;
    const std::string prefix = host_prefix(e.host);
    const bool dry_run = answer.value("dry_run", false);
    std::size_t count = 0;
    if (auto blobs = answer.find("blobs"); blobs != answer.end() && blobs->is_array()) {
        count = blobs->size();
        if (dry_run)
            for (const auto& blob : *blobs)
                line(m_out, prefix,
                     fmt::format("would remove blob {} ({})", json_str(blob, "digest"),
                                 format_bytes(json_bytes(blob, "bytes"))));
    }
    line(m_out, prefix,
         fmt::format("{} {} unused blob{}, {}", dry_run ? "would remove" : "removed", count,
                     count == 1 ? "" : "s", format_bytes(json_bytes(answer, "bytes"))));
    // What else went: each named with --dry-run, then how many and their bytes.
    auto removed = [&](const char* key, const std::function<std::string(const json&)>& name,
                       const std::function<std::string(std::size_t)>& what) {
        auto items = answer.find(key);
        if (items == answer.end() || !items->is_array() || items->empty())
            return;
        std::uint64_t bytes = 0;
        for (const auto& item : *items) {
            bytes += json_bytes(item, "bytes");
            if (dry_run)
                line(m_out, prefix,
                     fmt::format("would remove {} ({})", name(item),
                                 format_bytes(json_bytes(item, "bytes"))));
        }
        line(m_out, prefix,
             fmt::format("{} {}, {}", dry_run ? "would remove" : "removed", what(items->size()),
                         format_bytes(bytes)));
    };
    // The agent's images no kept release has (container engines).
    removed(
        "images",
        [](const json& image) {
            const auto release = json_str(image, "release");
            return fmt::format("image {} of {} ({})", json_str(image, "id").substr(0, 19),
                               json_str(image, "app"), release.empty() ? "untagged" : release);
        },
        [](std::size_t n) { return fmt::format("{} unused image{}", n, n == 1 ? "" : "s"); });
    // [logs] max_age: the log files past it.
    removed(
        "logs",
        [](const json& log) {
            return fmt::format("log {}/{}", json_str(log, "app"), json_str(log, "file"));
        },
        [](std::size_t n) {
            return fmt::format("{} log file{} past [logs] max_age", n, n == 1 ? "" : "s");
        });
}

std::string app_or_all(const json& object) {
    auto app = json_str(object, "app");
    return app.empty() ? "(all apps)" : app;
}

void HumanPrinter::render(const TokenCreated& e) {
    const json& token = *e.token;
    // The token alone on stdout, for T=$(deployctl token create ...).
    line(m_err, host_prefix(e.host),
         fmt::format("created token {}: {} on {}{} (shown once; keep it secret)",
                     json_str(token, "id"), json_str(token, "scope"), app_or_all(token),
                     json_str(token, "expires_at").empty()
                         ? ""
                         : ", expires " + short_time(json_str(token, "expires_at"))));
    line(m_out, "", json_str(token, "token"));
}

void HumanPrinter::render(const Tokens& e) {
    const std::string& host = e.host;
    const json& list = *e.list;
    if (!list.is_array() || list.empty()) {
        line(m_out, host_prefix(host), "no tokens");
        return;
    }
    const auto row = [](auto&&... cells) {
        return fmt::format("{:<12}  {:<7}  {:<6}  {:<16}  {:<19}  {:<19}  {}", cells...);
    };
    line(m_out, host_prefix(host),
         paint(Color::bold, row("ID", "STATE", "SCOPE", "APP", "CREATED", "EXPIRES", "NAME")));
    for (const auto& t : list) {
        auto expires = json_str(t, "expires_at");
        line(m_out, host_prefix(host),
             row(json_str(t, "id"), json_str(t, "state"), json_str(t, "scope"), app_or_all(t),
                 short_time(json_str(t, "created_at")), expires.empty() ? "-" : short_time(expires),
                 json_str(t, "name")));
    }
}

void HumanPrinter::render(const Audit& a) {
    const std::string& host = a.host;
    const json& list = *a.list;
    if (!list.is_array() || list.empty()) {
        line(m_out, host_prefix(host), "no audit entries");
        return;
    }
    line(m_out, host_prefix(host),
         paint(Color::bold,
               fmt::format("{:<19}  {:<24}  {:<50}  {}", "WHEN", "WHO", "WHAT", "RESULT")));
    for (const auto& e : list) {
        std::string who = json_str(e, "who");
        if (auto name = json_str(e, "token_name"); !name.empty())
            who += " (" + name + ")";
        std::string what = json_str(e, "method") + " " + json_str(e, "path");
        if (auto release = json_str(e, "release"); !release.empty())
            what += " [" + release + "]";
        if (e.contains("command") && e["command"].is_array()) { // deployctl run
            std::vector<std::string> argv;
            for (const auto& arg : e["command"])
                if (arg.is_string())
                    argv.push_back(arg.get<std::string>());
            what += " " + common::shell_join(argv);
        }
        // Failed logins: one row per address and minute, with the last request.
        const auto count = e.contains("count") && e["count"].is_number_integer()
                               ? e["count"].get<std::int64_t>()
                               : std::int64_t{1};
        if (json_str(e, "who").rfind("address:", 0) == 0)
            what = fmt::format("{} failed login{}, last {}", count, count == 1 ? "" : "s", what);
        else if (count != 1)
            what = fmt::format("{}× {}", count, what);
        std::string result = json_str(e, "result");
        const int status = e.value("status", 0);
        if (result == "ok")
            result = paint(Color::green, fmt::format("ok {}", status));
        else
            result = paint(Color::red, fmt::format("{} {}", status, json_str(e, "error")));
        line(m_out, host_prefix(host),
             fmt::format("{:<19}  {:<24}  {:<50}  {}", short_time(json_str(e, "ts")), who, what,
                         result));
    }
}

void HumanPrinter::render(const Templates& e) {
    for (const auto& t : e.list)
        m_out << fmt::format("{:<15} {}\n", t.name, t.description);
    m_out << "\nUse one with: deployctl init --template NAME\n";
    m_out.flush();
}

void HumanPrinter::render(const InitSummary& s) {
    if (m_style.quiet)
        return; // -q: the exit code says it all
    if (s.detected)
        step("",
             fmt::format("Detected {}: template {}", paint(Color::bold, s.stack), s.template_name));
    else
        step("", fmt::format("Template {} ({})", paint(Color::bold, s.template_name), s.stack));
    for (const auto& why : s.evidence)
        line(m_out, "", paint(Color::dim, "    because ") + why);
    step("", fmt::format("App name {} (from {})", s.app, s.app_source));
    if (!s.variant_reason.empty())
        step("", fmt::format("For {}: {}",
                             s.variant == "process" ? "the process engine" : "a container engine",
                             s.variant_reason));
    for (const auto& f : s.files)
        step("", paint(Color::green, f.replaced ? "Replaced " : "Wrote ") +
                     (s.dir == "." ? f.path : (std::filesystem::path(s.dir) / f.path).string()));
    if (!s.needs.empty())
        step("", "Agent: " + s.needs);
    for (const auto& note : s.notes)
        line(m_out, "", paint(Color::yellow, "note:") + " " + note);
    m_out << "\nNext:\n";
    for (const auto& command : s.next)
        m_out << "  " << command << '\n';
    m_out.flush();
}

} // namespace

std::unique_ptr<Printer> make_human_printer(HumanStyle style, std::ostream& out,
                                            std::ostream& err) {
    return std::make_unique<HumanPrinter>(style, out, err);
}

} // namespace cli::output
