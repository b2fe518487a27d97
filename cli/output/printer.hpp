#pragma once
// What deployctl tells its user: one Printer for people (human.cpp) and one
// for scripts (json.cpp, NDJSON on stdout, documented in docs/json.md).
// Commands report facts; the printers decide how they look.

#include <common/result.hpp>

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cli::output {

struct PackageSummary {
    std::string app;
    std::string commit;  // full sha
    std::string message; // first line
    std::size_t files = 0;
    std::uint64_t bytes = 0;
    bool dirty = false;
};

struct UploadStats {
    std::size_t files = 0;         // manifest entries
    std::size_t blobs_total = 0;   // distinct contents
    std::size_t blobs_missing = 0; // the agent lacked these
    std::uint64_t bytes_total = 0; // all distinct contents
    std::uint64_t bytes_missing = 0;
    std::uint64_t bytes_sent = 0;
};

struct DoneInfo {
    std::string host;
    std::string release;
    std::string state;
    std::string url;
    std::optional<std::string> error;
    std::int64_t elapsed_ms = 0;
    std::string previous; // rollback only
};

// One host's line of the table that ends a command run over several hosts.
struct SummaryRow {
    std::string host;
    std::string release;  // deploy: the release created; status/releases: the PRODUCTION one
    std::string state;    // deploy: PRODUCTION, QUEUED, FAILED, ROLLED_BACK, ROLLBACK_FAILED,
                          // KEPT, NOT_STARTED, UNREACHABLE, ERROR; status: PRODUCTION, NONE, ...
    std::string previous; // deploy: PRODUCTION before the deploy (live again when ROLLED_BACK)
    std::optional<std::int64_t> elapsed_ms;
    std::string note; // why (the error), or what happened
};

struct Summary {
    std::string command;  // "deploy", "status", "releases"
    std::string strategy; // deploy: "parallel" or "rolling"
    std::vector<SummaryRow> rows;
    bool ok = true;         // every host did what was asked
    bool consistent = true; // every host has the same PRODUCTION release
    int exit_code = 0;
    std::int64_t elapsed_ms = 0; // deploy: the whole run
};

// deployctl init --list: one template.
struct TemplateSummary {
    std::string name;
    std::string description;
    std::vector<std::string> files; // "deploy.toml", "Dockerfile"
};

// What deployctl init did.
struct InitSummary {
    std::string dir; // as given ("." by default)
    std::string app;
    std::string app_source; // "the folder name \"web\"", "package.json \"name\""
    std::string template_name;
    std::string stack;
    bool detected = false;             // false: --template chose
    std::vector<std::string> evidence; // why this template, file by file
    struct File {
        std::string path; // relative to dir
        bool replaced = false;
    };
    std::vector<File> files;
    std::vector<std::string> notes; // what to check before deploying
    std::vector<std::string> next;  // the commands to run next
};

class Printer {
  public:
    virtual ~Printer() = default;

    // With several agents, human lines are prefixed with the agent.
    virtual void set_several_hosts(bool several) { (void)several; }
    virtual void warning(std::string_view message) = 0;
    virtual void packaged(const PackageSummary& summary) = 0;
    virtual void uploading(const std::string& host, const UploadStats& stats) = 0;
    virtual void uploaded(const std::string& host, const UploadStats& stats) = 0;
    virtual void created(const std::string& host, const std::string& release,
                         const std::string& state) = 0;
    // A `state`, `log` or `health` event from the agent.
    virtual void agent_event(const std::string& host, const nlohmann::json& event) = 0;
    virtual void done(const DoneInfo& info) = 0;
    virtual void rolled_back(const DoneInfo& info) = 0;
    virtual void removed(const std::string& host, const std::string& release) = 0;
    virtual void releases(const std::string& host, const nlohmann::json& list) = 0;
    virtual void status(const std::string& host, const nlohmann::json& status) = 0;
    // GET /v1/apps/APP/env (secret values are never in it).
    virtual void env_list(const std::string& host, const nlohmann::json& answer) = 0;
    // The answer to setting (`set`) or removing (`unset`) variables.
    virtual void env_changed(const std::string& host, const nlohmann::json& answer) = 0;
    virtual void version(std::string_view version) = 0;
    // GET /v1/health (info = false) or /v1/info (info = true) of one agent.
    virtual void agent(const std::string& host, bool info, const nlohmann::json& answer) = 0;
    // deployctl token: a new token (its secret shown once), the list, a revoke.
    virtual void token_created(const std::string& host, const nlohmann::json& token) = 0;
    virtual void tokens(const std::string& host, const nlohmann::json& list) = 0;
    virtual void token_revoked(const std::string& host, const nlohmann::json& token) = 0;
    // deployctl audit: GET /v1/audit, newest first.
    virtual void audit(const std::string& host, const nlohmann::json& list) = 0;
    // `host` is empty when the error is not about one agent.
    virtual void error(const common::Error& error, const std::string& host) = 0;
    // While blobs upload to `host`: `bytes_sent` of `bytes_total` so far (the
    // missing blobs only). Called often, from the transport's progress callback;
    // the printer throttles (a redrawn bar on a terminal, nothing elsewhere).
    virtual void upload_progress(const std::string& host, std::uint64_t bytes_sent,
                                 std::uint64_t bytes_total) = 0;
    // The end of a command over several hosts (cli/fleet.hpp): a table for people, a
    // `summary` event for scripts (docs/json.md, docs/multi-host.md).
    virtual void summary(const Summary& summary) = 0;
    // deployctl init --list: every template.
    virtual void templates(const std::vector<TemplateSummary>& list) = 0;
    // deployctl init: what was detected and why, the files written, what to do next.
    virtual void initialized(const InitSummary& summary) = 0;
};

struct HumanStyle {
    bool color = false;
    bool quiet = false;
    bool show_host = false; // prefix lines with the agent (several hosts)
    // stdout is a terminal: an upload progress bar and a deployment phase line
    // redraw in place at the bottom (cli/output/progress.hpp). Never with `quiet`.
    bool live = false;
};

std::unique_ptr<Printer> make_human_printer(HumanStyle style, std::ostream& out, std::ostream& err);
std::unique_ptr<Printer> make_json_printer(std::ostream& out, std::ostream& err);

} // namespace cli::output
