// The printers' output for a scripted session, byte for byte, against the files in
// tests/fixtures/output/: every kind of event, with one host and with several, through the
// JSON printer, the human printer (plain and -q) and GroupedOutput over each. Each file holds
// what one stream received (`.err`: stderr).
//
// After a deliberate change of the output, rewrite the files and review their diff:
//   UPDATE_FIXTURES=1 build/tests/unit/unit_tests -tc='output session*'

#include <cli/output/grouped.hpp>
#include <cli/output/printer.hpp>
#include <cli/output/progress.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "fixtures.hpp"

namespace {

namespace fs = std::filesystem;
namespace out = cli::output;
using common::ErrorKind;
using nlohmann::json;

const fs::path k_fixtures = test::fixtures_dir() / "output";

// Short hosts: GroupedOutput's phase line (at most 80 columns off a terminal) stays whole.
const std::string k_a = "https://a:7070";
const std::string k_b = "https://b:7070";
const std::string k_c = "ssh://deploy@c";
const std::string k_url = "http://hello.localhost:8080/";

using Events = std::vector<out::Event>;

Events operator+(Events first, const Events& second) {
    first.insert(first.end(), second.begin(), second.end());
    return first;
}

json release(const char* id, const char* state, json error = nullptr) {
    return {{"id", id},
            {"app", "hello"},
            {"state", state},
            {"created_at", "2026-11-23T09:00:00.000Z"},
            {"commit", "3f2c1a0b9d8e7f60"},
            {"message", "Fix header"},
            {"error", std::move(error)},
            {"port", 41000}};
}

json state_event(const char* release, const char* state, const char* message = "") {
    json event = {{"event", "state"},
                  {"release", release},
                  {"state", state},
                  {"ts", "2026-11-23T09:00:01.000Z"}};
    if (*message)
        event["message"] = message;
    return event;
}

json log_event(const char* stream, const char* line) {
    return {{"event", "log"},
            {"release", "v4"},
            {"stream", stream},
            {"line", line},
            {"ts", "2026-11-23T09:00:02.000Z"}};
}

json health_event(bool ok, int status, const char* message) {
    return {{"event", "health"}, {"release", "v4"},    {"ok", ok},
            {"status", status},  {"message", message}, {"ts", "2026-11-23T09:00:03.000Z"}};
}

json token(const char* id, const char* scope, json app, json expires_at) {
    return {{"id", id},
            {"name", "ci"},
            {"app", std::move(app)},
            {"scope", scope},
            {"state", "active"},
            {"created_at", "2026-11-23T09:00:00.000Z"},
            {"expires_at", std::move(expires_at)},
            {"revoked_at", nullptr},
            {"last_used_at", nullptr}};
}

// What deployctl says before it contacts an agent.
Events opening() {
    return {
        out::Version{"0.1.0"},
        out::Version{"0.1.0", "http://web1:7070"},
        out::Completion{"bash",
                        "# bash completion for deployctl\ncomplete -F _deployctl deployctl\n"},
        out::LoggedIn{"https://web1:7443", "/home/me/.config/deployctl/credentials", true},
        out::Warning{"skipping tmp/sock: not a regular file or symlink"},
        out::PackageSummary{"hello", "3f2c1a0b9d8e7f60", "Fix header", 12, 3481, true},
    };
}

// A deployment that goes live; nothing to upload.
Events deploy_live(const std::string& host) {
    const out::UploadStats nothing{3, 3, 0, 3000, 0, 0, 0, ""};
    return {
        out::Uploading{host, nothing},
        out::Uploaded{host, nothing},
        out::Created{host, "v4", "QUEUED"},
        out::AgentEvent{host, state_event("v4", "BUILDING")},
        out::AgentEvent{host, state_event("v4", "BUILDING")}, // again
        out::AgentEvent{host, log_event("build", "npm ci")},
        out::AgentEvent{host, state_event("v4", "PROVISIONING")},
        out::AgentEvent{host, log_event("app", "listening on :41000")},
        out::AgentEvent{host, health_event(false, 503, "starting")},
        out::AgentEvent{host, health_event(true, 200, "")},
        out::AgentEvent{host, state_event("v4", "PRODUCTION")},
        out::AgentEvent{host, json{{"event", "note"}, {"text", "new"}}},
        out::Done{{host, "v4", "PRODUCTION", k_url, std::nullopt, 3200, ""}},
    };
}

// A deploy of what PRODUCTION already serves: nothing created (then the same, --dirty).
Events deploy_unchanged(const std::string& host) {
    const out::UploadStats nothing{3, 3, 0, 3000, 0, 0, 0, ""};
    return {
        out::Uploading{host, nothing},
        out::Uploaded{host, nothing},
        out::Unchanged{host, "v4", "3f2c1a0b9d8e7f60", false, k_url},
        out::Unchanged{host, "v6", "3f2c1a0b9d8e7f60", true, k_url},
    };
}

// An agent event that is not an object: passed on as "unknown" in JSON, not shown to people.
Events odd_agent_event(const std::string& host) {
    return {
        out::AgentEvent{host, json("not an object")},
    };
}

// A deployment that uploads and fails its health check.
Events deploy_failed(const std::string& host) {
    return {
        out::Uploading{host, out::UploadStats{3, 3, 2, 3000, 2048, 0, 0, ""}},
        out::UploadProgress{host, 1024, 2048},
        out::UploadProgress{host, 2048, 2048},
        out::Created{host, "v5", "QUEUED"},
        out::AgentEvent{host, state_event("v5", "BUILDING")},
        out::AgentEvent{host, state_event("v5", "FAILED", "health check timed out")},
        out::Done{{host, "v5", "FAILED", "", std::string("health check timed out"), 9100, ""}},
        out::Error{{ErrorKind::failed, "v5 failed: health check timed out"}, host},
    };
}

// An upload reported once it is done. No `uploading` before it: the human printer's
// elapsed time is then 0ms, the same on every run.
Events upload_only(const std::string& host) {
    return {
        out::Uploaded{host, out::UploadStats{2, 2, 1, 2048, 1024, 1024, 0, ""}},
    };
}

Events unreachable(const std::string& host) {
    return {
        out::Error{{ErrorKind::connection, "cannot reach the agent at " + host}, host},
    };
}

Events rollbacks(const std::string& host) {
    return {
        out::RolledBack{{host, "v3", "PRODUCTION", k_url, std::nullopt, 1520, "v4"}},
        out::RolledBack{{host, "v2", "PRODUCTION", "", std::nullopt, 800, ""}},
        // rollback over several hosts: this one served v3 already.
        out::RolledBack{{host, "v3", "PRODUCTION", k_url, std::nullopt, 0, "", true}},
    };
}

// The commands that ask an agent something: rm, releases, status, env, agent, token, audit.
Events queries(const std::string& host) {
    json dirty = release("v5", "INACTIVE");
    dirty["dirty"] = true;
    json releases = json::array(
        {dirty, release("v4", "PRODUCTION"), release("v3", "FAILED", "build failed: exit 1")});
    // When v4 served: once before (a rollback took it off), and again since.
    releases[1]["served"] =
        json::array({{{"from", "2026-11-23T09:00:05.000Z"}, {"until", "2026-11-23T09:40:12.000Z"}},
                     {{"from", "2026-11-23T10:02:00.000Z"}, {"until", nullptr}}});
    const json vars = {
        {"app", "hello"},
        {"vars",
         {{{"name", "API_KEY"}, {"secret", true}, {"updated_at", "t"}},
          {{"name", "LOG_LEVEL"}, {"secret", false}, {"value", "debug"}, {"updated_at", "t"}}}}};
    const json info = {{"version", "0.1.0"},
                       {"engine", "docker"},
                       {"engine_version", "24.0.7"},
                       {"proxy_listen", "0.0.0.0:8080"},
                       {"proxy_https_listen", "0.0.0.0:8443"},
                       {"data_dir", "/var/lib/deploy-agent"},
                       {"tls_fingerprint", "sha256:ab:cd"},
                       {"apps", {"hello", "shop"}}};
    json created = token("3f2a9c01b2d4", "deploy", "hello", "2027-01-01T00:00:00.000Z");
    created["token"] = "dpa_3f2a9c01b2d4_secret";
    json revoked = token("3f2a9c01b2d4", "deploy", "hello", nullptr);
    revoked["revoked_at"] = "2026-11-24T10:00:00.000Z";
    const json audit = json::array({{{"id", 42},
                                     {"ts", "2026-11-23T09:00:00.000Z"},
                                     {"who", "token:3f2a9c01b2d4"},
                                     {"token_name", "ci"},
                                     {"method", "POST"},
                                     {"path", "/v1/apps/hello/deployments"},
                                     {"app", "hello"},
                                     {"release", "v3"},
                                     {"status", 201},
                                     {"result", "ok"},
                                     {"error", nullptr}},
                                    {{"id", 41},
                                     {"ts", "2026-11-23T08:00:00.000Z"},
                                     {"who", "ssh"},
                                     {"method", "DELETE"},
                                     {"path", "/v1/apps/hello/releases/v4"},
                                     {"status", 409},
                                     {"result", "refused"},
                                     {"error", "v4 is in production"}},
                                    {{"id", 40},
                                     {"ts", "2026-11-23T07:00:00.000Z"},
                                     {"who", "address:203.0.113.9"},
                                     {"token_name", "dpa_3f2a9c01b2d4…"},
                                     {"method", "GET"},
                                     {"path", "/v1/apps"},
                                     {"app", nullptr},
                                     {"release", nullptr},
                                     {"status", 429},
                                     {"result", "error"},
                                     {"error", "too_many_failed_logins"},
                                     {"count", 1234}}});
    return {
        out::Removed{host, "v2"},
        out::Releases{host, releases},
        out::Releases{host, json::array()},
        out::Processes{host,
                       json{{"app", "hello"},
                            {"release", "v4"},
                            {"engine", "process"},
                            {"stopped", false},
                            {"scale", {{"web", 2}, {"worker", 1}}},
                            {"processes", json::array({{{"process", "web"},
                                                        {"instance", 1},
                                                        {"state", "running"},
                                                        {"pid", 4242},
                                                        {"container", nullptr},
                                                        {"started_at", "2026-11-23T09:00:05.000Z"},
                                                        {"uptime_s", 3725},
                                                        {"restarts", 0},
                                                        {"last_exit", nullptr},
                                                        {"rss_bytes", 2154496},
                                                        {"cpu_percent", 0.4}},
                                                       {{"process", "web"},
                                                        {"instance", 2},
                                                        {"state", "starting"},
                                                        {"pid", 0},
                                                        {"container", nullptr},
                                                        {"started_at", nullptr},
                                                        {"uptime_s", nullptr},
                                                        {"restarts", 0},
                                                        {"last_exit", nullptr},
                                                        {"rss_bytes", 0},
                                                        {"cpu_percent", 0.0}},
                                                       {{"process", "worker"},
                                                        {"instance", 1},
                                                        {"state", "crashed"},
                                                        {"pid", 0},
                                                        {"container", nullptr},
                                                        {"started_at", nullptr},
                                                        {"uptime_s", nullptr},
                                                        {"restarts", 3},
                                                        {"last_exit", "exited with status 1"},
                                                        {"rss_bytes", 0},
                                                        {"cpu_percent", 0.0}}})}}},
        out::Processes{host, json{{"app", "site"},
                                  {"release", "v2"},
                                  {"engine", "static"},
                                  {"stopped", false},
                                  {"scale", json::object()},
                                  {"processes", json::array()}}},
        out::Processes{host, json{{"app", "hello"},
                                  {"release", "v4"},
                                  {"engine", "process"},
                                  {"stopped", false},
                                  {"scale", {{"web", 0}}},
                                  {"processes", json::array()}}},
        out::Status{host, json{{"app", "hello"},
                               {"production", "v4"},
                               {"previous", "v2"},
                               {"next_release", "v5"},
                               {"url", k_url},
                               {"domains", {"hello.example.com"}},
                               {"releases", releases}}},
        out::Status{host, json{{"app", "hello"}, {"production", nullptr}, {"url", nullptr}}},
        out::Status{host, json{{"app", "hello"},
                               {"production", "v4"},
                               {"state", "stopped"},
                               {"url", k_url},
                               {"releases", json::array()}}},
        out::Apps{host, json::array({{{"app", "hello"},
                                      {"production", "v4"},
                                      {"state", "running"},
                                      {"commit", "3f2c1a0b9d8e7f60"},
                                      {"url", k_url}},
                                     {{"app", "web"},
                                      {"production", nullptr},
                                      {"state", "no_release"},
                                      {"commit", nullptr},
                                      {"url", "http://web.localhost:8080/"}}})},
        out::Apps{host, json::array()},
        out::AppChanged{host, "stop",
                        json{{"app", "hello"},
                             {"release", "v4"},
                             {"state", "stopped"},
                             {"changed", true},
                             {"pid", nullptr}}},
        out::AppChanged{host, "stop",
                        json{{"app", "hello"},
                             {"release", "v4"},
                             {"state", "stopped"},
                             {"changed", false},
                             {"pid", nullptr}}},
        out::AppChanged{host, "start",
                        json{{"app", "hello"},
                             {"release", "v4"},
                             {"state", "running"},
                             {"changed", true},
                             {"pid", 4242}}},
        out::AppChanged{host, "restart",
                        json{{"app", "hello"},
                             {"release", "v4"},
                             {"state", "running"},
                             {"changed", true},
                             {"pid", 4243}}},
        out::Canary{host, "show",
                    json{{"app", "hello"},
                         {"release", "v5"},
                         {"production", "v4"},
                         {"percent", 20},
                         {"auto_at", nullptr},
                         {"max_error_rate", 1.0},
                         {"sides",
                          {{"canary",
                            {{"release", "v5"},
                             {"requests", 198},
                             {"errors", 2},
                             {"error_rate", 1.0101},
                             {"p95_ms", 8.6}}},
                           {"production",
                            {{"release", "v4"},
                             {"requests", 802},
                             {"errors", 0},
                             {"error_rate", 0.0},
                             {"p95_ms", 8.25}}}}}}},
        out::Canary{
            host, "promote",
            json{{"app", "hello"}, {"release", "v5"}, {"state", "PRODUCTION"}, {"previous", "v4"}}},
        out::Canary{host, "abort",
                    json{{"app", "hello"},
                         {"release", "v6"},
                         {"state", "FAILED"},
                         {"error", "canary aborted"}}},
        out::AppDestroyed{host, json{{"destroyed", "hello"},
                                     {"releases", {"v4", "v3"}},
                                     {"blobs_removed", 12},
                                     {"blobs_kept", 2}}},
        out::EnvList{host, vars},
        out::EnvList{host, json{{"app", "hello"}, {"vars", json::array()}}},
        out::EnvChanged{
            host,
            json{{"app", "hello"},
                 {"set", {"API_KEY", "LOG_LEVEL"}},
                 {"takes_effect",
                  "when the app next starts (deployctl restart, deploy --force or rollback)"}}},
        out::EnvChanged{host, json{{"app", "hello"}, {"unset", {"LOG_LEVEL"}}}},
        out::CronJobs{host, json{{"app", "hello"},
                                 {"jobs",
                                  {json{{"name", "cleanup"},
                                        {"schedule", "*/15 * * * *"},
                                        {"timezone", "UTC"},
                                        {"command", "./manage.py clearsessions"},
                                        {"next_run", "2026-03-01T04:30:00Z"},
                                        {"inactive", nullptr},
                                        {"running", false},
                                        {"last_run",
                                         {{"started", "2026-03-01T04:15:00Z"},
                                          {"finished", "2026-03-01T04:15:01Z"},
                                          {"exit", 0},
                                          {"duration_ms", 1300},
                                          {"outcome", "ok"},
                                          {"release", "v7"}}}},
                                   json{{"name", "report"},
                                        {"schedule", "0 6 * * mon"},
                                        {"timezone", "Europe/Paris"},
                                        {"command", "./report"},
                                        {"next_run", nullptr},
                                        {"inactive", "another host of the target runs it"},
                                        {"running", true},
                                        {"last_run", nullptr}}}}}},
        out::CronJobs{host, json{{"app", "hello"}, {"jobs", json::array()}}},
        out::CronStarted{host,
                         json{{"app", "hello"},
                              {"job", "cleanup"},
                              {"release", "v7"},
                              {"log", "/var/lib/deploy-agent/apps/hello/logs/cron.cleanup.log"}}},
        out::BuildCache{
            host, json{{"app", "hello"},
                       {"max", 2147483648u},
                       {"bytes", 18u << 20},
                       {"builds_bytes", 25u << 20},
                       {"entries",
                        {json{{"name", "node_modules"},
                              {"kind", "path"},
                              {"bytes", 15u << 20},
                              {"last_used", "2026-03-01T04:15:00.123456Z"}},
                         json{{"name", "npm"},
                              {"kind", "dir"},
                              {"bytes", 3u << 20},
                              {"last_used", "2026-03-01T04:15:00.654321Z"}},
                         json{{"name",
                               "5f0c2d8e41a9b3c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3"},
                              {"kind", "build"},
                              {"bytes", 25u << 20},
                              {"last_used", "2026-03-01T04:14:58.000000Z"},
                              {"release", "v7"}}}}}},
        out::BuildCache{host,
                        json{{"app", "hello"}, {"max", 2147483648u}, {"entries", json::array()}}},
        out::BuildCacheCleared{host, json{{"app", "hello"}, {"removed_bytes", 43u << 20}}},
        out::Agent{host, out::AgentQuery::ping, json{{"version", "0.1.0"}}},
        out::Agent{host, out::AgentQuery::info, info},
        out::Agent{host, out::AgentQuery::info, json{{"version", "0.1.0"}, {"engine", "process"}}},
        out::Agent{host, out::AgentQuery::disk,
                   json{{"data_dir", "/var/lib/deploy-agent"},
                        {"free", 12u << 20},
                        {"size", 64u << 20},
                        {"reserve", 3355444u},
                        {"total", 40u << 20},
                        {"blobs", {{"bytes", 20u << 20}, {"count", 8u}, {"unused", 1u << 20}}},
                        {"apps", json::array({json{{"app", "hello"},
                                                   {"releases", 18u << 20},
                                                   {"blobs", 19u << 20},
                                                   {"logs", 52000u},
                                                   {"build_cache", 7u << 20}}})}}},
        out::Agent{host, out::AgentQuery::disk,
                   json{{"data_dir", "/var/lib/deploy-agent"},
                        {"free", 1u << 20},
                        {"size", 64u << 20},
                        {"reserve", 3355444u},
                        {"total", 1u << 20},
                        {"blobs", {{"bytes", 0u}, {"count", 0u}, {"unused", 0u}}},
                        {"apps", json::array()}}},
        out::Agent{host, out::AgentQuery::prune,
                   json{{"dry_run", true},
                        {"blobs", json::array({json{{"digest", std::string(64, 'a')},
                                                    {"bytes", 1u << 20}}})},
                        {"bytes", 1u << 20}}},
        out::Agent{host, out::AgentQuery::prune,
                   json{{"dry_run", false}, {"blobs", json::array()}, {"bytes", 0u}}},
        out::TokenCreated{host, created},
        out::Tokens{host, json::array({token("3f2a9c01b2d4", "deploy", "hello", nullptr),
                                       token("77aa00bb11cc", "admin", nullptr,
                                             "2027-01-01T00:00:00.000Z")})},
        out::Tokens{host, json::array()},
        out::TokenRevoked{host, revoked},
        out::Audit{host, audit},
        out::Audit{host, json::array()},
        out::RunOutput{host, "stdout", "Migrating 3 tables\n"},
        out::RunOutput{host, "stderr", "warning: table users is large\n"},
        out::RunExit{host, 0, std::nullopt, std::nullopt},
        out::RunExit{host, 143, 15, std::nullopt},
        out::RunExit{host, 127, std::nullopt, "no-such: command not found"},
    };
}

// deployctl init --list, then deployctl init detecting, and with --template.
Events init_steps() {
    out::InitSummary detected;
    detected.dir = ".";
    detected.app = "fullstack";
    detected.app_source = "the name \"fullstack\" in package.json";
    detected.template_name = "node-server";
    detected.stack = "Node.js (Express)";
    detected.detected = true;
    detected.evidence = {"package.json: \"express\" in dependencies"};
    detected.files = {{"deploy.toml", false}, {"Dockerfile", true}};
    detected.variant = "container";
    detected.engine = "container";
    detected.needs = "this app builds with its Dockerfile: the agent needs a container engine "
                     "(deploy-agent serve --engine auto|docker|podman)";
    detected.notes = {"the server must listen on process.env.HOST and process.env.PORT"};
    detected.next = {"git init && git add -A && git commit -m 'First commit'",
                     "deployctl deploy --host ssh://USER@SERVER"};
    out::InitSummary chosen;
    chosen.dir = "web";
    chosen.app = "web";
    chosen.app_source = "the folder name \"web\"";
    chosen.template_name = "static";
    chosen.stack = "static files";
    chosen.evidence = {"--template static"};
    chosen.files = {{"deploy.toml", false}};
    chosen.variant = "process";
    chosen.variant_reason = "--engine process";
    chosen.engine = "any";
    chosen.needs = "the agent's proxy serves the files itself: any engine will do";
    chosen.next = {"deployctl deploy"};
    return {
        out::Templates{{{"go", "Go: a static binary", {"deploy.toml", "Dockerfile"}},
                        {"static", "Static files served by deploy-proxy", {"deploy.toml"}}}},
        detected,
        chosen,
    };
}

Events summaries() {
    out::Summary deploy;
    deploy.command = "deploy";
    deploy.strategy = "parallel";
    deploy.ok = false;
    deploy.exit_code = 1;
    deploy.elapsed_ms = 5210;
    deploy.rows = {{k_a, "v5", "ROLLED_BACK", "v4", 1900, "rolled back: v4 is live again"},
                   {k_b, "v5", "FAILED", "v4", 3400, "v5 failed: health check (v4 still live)"},
                   {k_c, "", "NOT_STARTED", "", std::nullopt, "not started: another host failed"}};
    out::Summary rolling = deploy;
    rolling.strategy = "rolling";
    rolling.ok = true;
    rolling.exit_code = 0;
    rolling.rows = {{k_a, "v5", "PRODUCTION", "v4", 1900, ""},
                    {k_b, "v5", "KEPT", "v4", 3400, "kept: --no-rollback"},
                    {k_c, "v5", "PRODUCTION", "v5", 40, "already served it: nothing to do"}};
    out::Summary status;
    status.command = "status";
    status.ok = false;
    status.consistent = false;
    status.exit_code = 3;
    status.rows = {
        {k_a, "v4", "PRODUCTION", "", std::nullopt, k_url, "3f2c1a0b9d8e7f60"},
        {k_b, "v7", "PRODUCTION", "", std::nullopt, k_url, "3f2c1a0b9d8e7f60", true, {"tree"}},
        {k_c,
         "v2",
         "PRODUCTION",
         "",
         std::nullopt,
         k_url,
         "9e1d2c3b4a5f6e7d",
         false,
         {"commit", "tree", "config"}},
        {k_c, "", "NONE", "", std::nullopt, "", "", false, {"release"}},
        {k_c, "", "UNREACHABLE", "", std::nullopt, "cannot reach"}};
    out::Summary releases;
    releases.command = "releases";
    // In sync: the same commit, tree and deploy.toml under two ids.
    releases.rows = {{k_a, "v4", "PRODUCTION", "", std::nullopt, "v4 v3", "3f2c1a0b9d8e7f60"},
                     {k_b, "v9", "PRODUCTION", "", std::nullopt, "v9", "3f2c1a0b9d8e7f60"}};
    out::Summary rollback;
    rollback.command = "rollback";
    rollback.ok = false;
    rollback.exit_code = 1;
    rollback.elapsed_ms = 2400;
    rollback.consistent = false;
    rollback.rows = {{k_a, "v3", "ROLLED_BACK", "v4", 116, "put back: v4 is live again"},
                     {k_b, "v3", "FAILED", "v4", 2100, "rollback to v3 failed: health check"},
                     {k_c, "v3", "NOT_STARTED", "v4", std::nullopt, "not started"}};
    out::Summary rolled = rollback;
    rolled.ok = true;
    rolled.exit_code = 0;
    rolled.consistent = true;
    rolled.rows = {{k_a, "v3", "PRODUCTION", "v4", 600, ""},
                   {k_b, "v3", "PRODUCTION", "v3", std::nullopt, "already live"}};
    return {
        deploy, rolling, status, releases, rollback, rolled,
    };
}

Events closing() {
    return {
        out::Error{{ErrorKind::failed, "2 of 3 hosts failed"}, ""},
    };
}

// One host, then several: everything a Printer is told, in one go.
void play_session(out::Printer& p) {
    for (const auto& event : opening() + deploy_live(k_a) + deploy_unchanged(k_a) +
                                 odd_agent_event(k_a) + deploy_failed(k_a) + rollbacks(k_a) +
                                 queries(k_a) + init_steps() + unreachable(k_a))
        p.emit(event);
    p.set_several_hosts(true);
    for (const auto& event : opening() + deploy_live(k_a) + deploy_failed(k_b) +
                                 deploy_unchanged(k_c) + upload_only(k_c) + unreachable(k_c) +
                                 rollbacks(k_a) + queries(k_b) + summaries() + closing())
        p.emit(event);
}

// Three hosts deploying at once through GroupedOutput: their steps interleave, one host at
// a time prints live, the others are held back until it finishes. Then a rollback, every
// other kind of event through a host's printer, and the summary on the printer itself.
void play_grouped(out::Printer& p, out::GroupedOutput::Mode mode, std::ostream* term) {
    p.set_several_hosts(true);
    {
        out::GroupedOutput grouped(p, mode, term);
        struct Host {
            std::string url;
            Events events;
            std::unique_ptr<out::Printer> printer;
            std::size_t next = 0;
        };
        std::vector<Host> hosts;
        hosts.push_back({k_a, opening() + deploy_live(k_a), nullptr});
        hosts.push_back({k_b, deploy_failed(k_b), nullptr});
        hosts.push_back({k_c, upload_only(k_c) + unreachable(k_c), nullptr});
        for (auto& host : hosts)
            host.printer = grouped.for_host(host.url);
        for (bool more = true; more;) {
            more = false;
            for (auto& host : hosts) {
                if (host.next == host.events.size())
                    continue;
                host.printer->emit(host.events[host.next++]);
                if (host.next == host.events.size())
                    grouped.finish(host.url);
                else
                    more = true;
            }
        }
        auto again = grouped.for_host(k_a);
        for (const auto& event : rollbacks(k_a))
            again->emit(event);
        grouped.finish(k_a);
        auto rest = grouped.for_host(k_b);
        for (const auto& event : queries(k_b) + init_steps() + opening())
            rest->emit(event);
        grouped.finish(k_b);
        grouped.flush_all();
    }
    for (const auto& event : summaries() + closing())
        p.emit(event);
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Where two texts part: the first line that differs, for the failure message.
std::string first_difference(const std::string& expected, const std::string& actual) {
    std::istringstream e(expected), a(actual);
    std::string le, la;
    for (int n = 1;; ++n) {
        bool more_e = static_cast<bool>(std::getline(e, le));
        bool more_a = static_cast<bool>(std::getline(a, la));
        if (!more_e && !more_a)
            return "the same lines, different bytes (a final newline?)";
        if (le != la || more_e != more_a)
            return "line " + std::to_string(n) + ":\n  expected: " + (more_e ? le : "(end)") +
                   "\n  actual:   " + (more_a ? la : "(end)");
    }
}

void check_fixture(const std::string& name, const std::string& actual) {
    const fs::path path = k_fixtures / name;
    if (const char* update = std::getenv("UPDATE_FIXTURES"); update && std::string(update) == "1") {
        fs::create_directories(k_fixtures);
        std::ofstream(path, std::ios::binary) << actual;
    }
    REQUIRE_MESSAGE(fs::exists(path), path.string() << " is missing (UPDATE_FIXTURES=1 writes it)");
    const std::string expected = read_file(path);
    const bool same = actual == expected;
    CHECK_MESSAGE(same,
                  name << " differs from the fixture, " << first_difference(expected, actual));
}

} // namespace

TEST_CASE("output session: the JSON printer") {
    std::ostringstream o, e;
    play_session(*out::make_json_printer(o, e));
    check_fixture("session.ndjson", o.str());
    check_fixture("session.ndjson.err", e.str());
}

TEST_CASE("output session: the human printer") {
    std::ostringstream o, e;
    play_session(*out::make_human_printer({}, o, e));
    check_fixture("session.txt", o.str());
    check_fixture("session.txt.err", e.str());
}

TEST_CASE("output session: the human printer with -q") {
    std::ostringstream o, e;
    out::HumanStyle style;
    style.quiet = true;
    play_session(*out::make_human_printer(style, o, e));
    check_fixture("session-quiet.txt", o.str());
    check_fixture("session-quiet.txt.err", e.str());
}

TEST_CASE("output session: GroupedOutput over the human printer, with the phase line") {
    // The phase line is cut to the width of stdout when it is a terminal (80 otherwise).
    if (out::terminal_width(STDOUT_FILENO).value_or(80) < 80) {
        MESSAGE("skipped: stdout is a terminal narrower than 80 columns");
        return;
    }
    std::ostringstream o, e;
    auto printer = out::make_human_printer({}, o, e);
    play_grouped(*printer, out::GroupedOutput::Mode::grouped, &o); // stdout is the terminal
    check_fixture("session-grouped.txt", o.str());
    check_fixture("session-grouped.txt.err", e.str());
}

TEST_CASE("output session: GroupedOutput over the JSON printer") {
    std::ostringstream o, e;
    auto printer = out::make_json_printer(o, e);
    play_grouped(*printer, out::GroupedOutput::Mode::immediate, nullptr);
    check_fixture("session-grouped.ndjson", o.str());
    check_fixture("session-grouped.ndjson.err", e.str());
}
