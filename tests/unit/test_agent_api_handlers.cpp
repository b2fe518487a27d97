// The API's handlers against a fake Service: validation before anything is
// written, error mapping, and the NDJSON streams read from log files.

#include <agent/api/handlers.hpp>
#include <agent/deploy/events.hpp>
#include <agent/logs/stamp.hpp>
#include <common/hash.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <fstream>
#include <thread>

#include "temp_dir.hpp"

using namespace agent::api;
using nlohmann::json;

namespace {

class FakeService : public agent::Service {
  public:
    common::Status start() override { return {}; }
    void stop() override {}
    std::string refusal; // every deployment refused with it (a canary in progress)
    common::Result<agent::ReleaseInfo> create_deployment(agent::NewDeployment d) override {
        if (!refusal.empty())
            return common::make_error(common::ErrorKind::refused, refusal);
        if (!d.release.empty() && d.release != "v7") // the app's next id is v7
            return common::make_error(common::ErrorKind::refused,
                                      "release id " + d.release + " is taken");
        created.push_back(d);
        agent::ReleaseInfo info;
        info.id = "v1";
        info.app = d.app;
        return info;
    }
    common::Result<agent::ReleaseInfo> release(const std::string& app,
                                               const std::string& id) override {
        ++release_calls;
        if (on_release)
            on_release(release_calls);
        for (const auto& r : releases)
            if (r.app == app && r.id == id)
                return r;
        return common::make_error(common::ErrorKind::not_found, "no release " + id);
    }
    common::Result<agent::AppStatus> status(const std::string& app) override {
        if (app != "hello")
            return common::make_error(common::ErrorKind::not_found, "unknown");
        agent::AppStatus s;
        s.app = app;
        s.production = production;
        s.next_release = "v7";
        s.url = "http://hello.localhost:8080/";
        s.releases = releases;
        return s;
    }
    std::vector<agent::AppStatus> apps() override { return {*status("hello")}; }
    common::Result<agent::Promotion> rollback(const std::string&,
                                              const std::optional<std::string>&) override {
        return common::make_error(common::ErrorKind::refused, "nothing to roll back to");
    }
    common::Status remove(const std::string&, const std::string& id) override {
        return common::make_error(common::ErrorKind::refused, "release " + id + " is PRODUCTION");
    }
    common::Result<agent::AppAction> stop_app(const std::string& app) override {
        if (app != "hello")
            return common::make_error(common::ErrorKind::not_found, "no app named " + app);
        actions.push_back("stop");
        return agent::AppAction{app, "v2", "stopped", true, 0};
    }
    common::Result<agent::AppAction> start_app(const std::string& app) override {
        actions.push_back("start");
        return agent::AppAction{app, "v2", "running", false, 42};
    }
    common::Result<agent::AppAction> restart_app(const std::string&) override {
        return common::make_error(common::ErrorKind::failed, "health check failed");
    }
    common::Result<agent::Destroyed> destroy_app(const std::string& app) override {
        actions.push_back("destroy");
        return agent::Destroyed{app, {"v2", "v1"}, 3, 1};
    }
    std::vector<std::string> actions;
    std::string engine() const override { return "process"; }
    std::string engine_version() const override { return {}; }
    std::string proxy_listen() const override { return "127.0.0.1:8080"; }
    std::string proxy_https_listen() const override { return ""; }
    std::vector<agent::secrets::VarInfo> env(const std::string&) override {
        std::vector<agent::secrets::VarInfo> vars;
        for (const auto& var : env_set)
            vars.push_back({var.name, var.secret, var.secret ? "" : var.value, "t"});
        return vars;
    }
    common::Status set_env(const std::string&, std::vector<agent::secrets::NewVar> vars) override {
        env_set.insert(env_set.end(), vars.begin(), vars.end());
        return {};
    }
    common::Status unset_env(const std::string&, const std::vector<std::string>& names) override {
        env_unset.insert(env_unset.end(), names.begin(), names.end());
        return {};
    }

    common::Result<std::vector<agent::CronJobInfo>> cron_jobs(const std::string& app) override {
        if (app != "hello")
            return common::make_error(common::ErrorKind::not_found, "no app named '" + app + "'");
        agent::CronJobInfo tick;
        tick.name = "tick";
        tick.schedule = "* * * * *";
        tick.timezone = "UTC";
        tick.command = "./tick";
        tick.next_run = "2026-01-01T10:01:00Z";
        agent::CronJobInfo report = tick;
        report.name = "report";
        report.next_run.clear();
        report.inactive = "another host of the target runs it";
        report.last_started = "2026-01-01T09:00:00Z";
        report.last_finished = "2026-01-01T09:00:02Z";
        report.last_exit = 1;
        report.last_duration_ms = 2000;
        report.last_outcome = "failed";
        report.last_release = "v2";
        return std::vector<agent::CronJobInfo>{tick, report};
    }
    common::Result<agent::CronRunStarted> run_cron(const std::string& app,
                                                   const std::string& job) override {
        if (job == "busy")
            return common::make_error(common::ErrorKind::refused, "cron job busy is running");
        if (job != "tick")
            return common::make_error(common::ErrorKind::not_found, "no cron job named " + job);
        actions.push_back("cron " + app + " " + job);
        return agent::CronRunStarted{job, "v2", "/data/apps/hello/logs/cron.tick.log"};
    }
    std::vector<agent::NewDeployment> created;
    std::vector<agent::secrets::NewVar> env_set;
    std::vector<std::string> env_unset;
    std::vector<agent::ReleaseInfo> releases;
    std::optional<std::string> production;
    int release_calls = 0;
    std::function<void(int)> on_release;
};

class CollectSink : public StreamSink {
  public:
    // One write may carry several lines (handlers_streams.cpp's Batch): kept one by one.
    bool write(std::string_view text) override {
        for (std::size_t at = 0; at <= text.size();) {
            auto end = std::min(text.find('\n', at), text.size());
            lines.emplace_back(text.substr(at, end - at));
            at = end + 1;
        }
        return true;
    }
    bool alive() override { return true; }
    std::vector<std::string> lines;
};

struct Fixture {
    test::TempDir dir;
    FakeService service;
    agent::BlobStore blobs{dir.path() / "blobs"};
    ApiContext context{service, blobs, agent::DataDir(dir.path()), std::chrono::milliseconds(1)};
    Router router = make_router(context);

    Response call(const std::string& method, const std::string& target, std::string body = "") {
        Request request;
        request.method = method;
        const auto question = target.find('?');
        request.path = target.substr(0, question);
        if (question != std::string::npos)
            request.query = parse_query(target.substr(question + 1));
        request.body = std::move(body);
        auto match = router.match(method, request.path);
        REQUIRE(match.result == MatchResult::found);
        request.params = match.params;
        return match.route->handler(request);
    }

    void add_release(const std::string& id, common::State state) {
        agent::ReleaseInfo info;
        info.id = id;
        info.app = "hello";
        info.state = state;
        service.releases.push_back(info);
    }

    void append(const std::filesystem::path& path, const std::string& text) {
        std::filesystem::create_directories(path.parent_path());
        std::ofstream(path, std::ios::app) << text;
    }
};

std::string code_of(const Response& response) {
    return json::parse(response.body)["error"]["code"].get<std::string>();
}

const std::string k_config = "app = \"hello\"\n[run]\ncommand = \"./start\"\n";

std::string deployment(const std::string& path, const std::string& digest,
                       const std::string& config = k_config) {
    return json{
        {"config", config},
        {"manifest",
         {{"files", {{{"path", path}, {"mode", "file"}, {"digest", digest}, {"size", 5}}}}}},
        {"commit", "abc"},
        {"message", "msg"}}
        .dump();
}

} // namespace

TEST_CASE_FIXTURE(Fixture, "POST deployments validates everything before creating") {
    const auto digest = common::sha256_hex("hello");
    REQUIRE(blobs.put(digest, "hello").ok());

    SUBCASE("valid: 201 and the service gets the parsed deployment") {
        const auto response =
            call("POST", "/v1/apps/hello/deployments", deployment("index.html", digest));
        CHECK(response.status == 201);
        CHECK(json::parse(response.body) ==
              json{{"app", "hello"}, {"release", "v1"}, {"state", "QUEUED"}});
        REQUIRE(service.created.size() == 1);
        CHECK(service.created[0].config.app == "hello");
        CHECK(service.created[0].commit == "abc");
        CHECK(service.created[0].manifest.entries.size() == 1);
    }
    SUBCASE("hostile manifest path: 400, nothing created") {
        for (const char* path : {"../x", "/etc/passwd", "a/../../b", ""}) {
            CAPTURE(path);
            const auto response =
                call("POST", "/v1/apps/hello/deployments", deployment(path, digest));
            CHECK(response.status == 400);
            CHECK(code_of(response) == "bad_request");
        }
        CHECK(service.created.empty());
    }
    SUBCASE("a path the store cannot keep: 400 bad_path, the path escaped, nothing created") {
        for (const auto& [path, shown] :
             std::vector<std::pair<std::string, std::string>>{{"a\nb", "a\\nb"},
                                                              {"x\x1b[31m", "x\\x1b[31m"},
                                                              {"del\x7f", "del\\x7f"},
                                                              {"nel\xc2\x85", "nel\\u0085"}}) {
            CAPTURE(shown);
            const auto response =
                call("POST", "/v1/apps/hello/deployments", deployment(path, digest));
            CHECK(response.status == 400);
            CHECK(code_of(response) == "bad_path");
            CHECK(json::parse(response.body)["error"]["message"].get<std::string>().find(
                      "\"" + shown + "\"") != std::string::npos);
        }
        CHECK(service.created.empty());
    }
    SUBCASE("a path that is not UTF-8: 400, the message says so") {
        auto body = deployment("PLACEHOLDER", digest);
        body.replace(body.find("PLACEHOLDER"), 11, "bad\xff");
        const auto response = call("POST", "/v1/apps/hello/deployments", body);
        CHECK(response.status == 400);
        CHECK(code_of(response) == "bad_request");
        CHECK(json::parse(response.body)["error"]["message"].get<std::string>().find(
                  "not valid UTF-8 at byte") != std::string::npos);
        CHECK(service.created.empty());
    }
    SUBCASE("non-ASCII names are fine") {
        CHECK(call("POST", "/v1/apps/hello/deployments",
                   deployment("\xe6\x97\xa5\xe6\x9c\xac/caf\xc3\xa9.html", digest))
                  .status == 201);
    }
    SUBCASE("a declared size that is not the stored blob's: 400 size_mismatch, nothing created") {
        auto body = json::parse(deployment("index.html", digest));
        body["manifest"]["files"][0]["size"] = 1'000'000'000'000ull;
        const auto response = call("POST", "/v1/apps/hello/deployments", body.dump());
        CHECK(response.status == 400);
        CHECK(code_of(response) == "size_mismatch");
        const auto message = json::parse(response.body)["error"]["message"].get<std::string>();
        CHECK(message.find("\"index.html\" declares 1000000000000 bytes") != std::string::npos);
        CHECK(message.find("holds 5 bytes") != std::string::npos);
        body["manifest"]["files"][0]["size"] = 4;
        CHECK(code_of(call("POST", "/v1/apps/hello/deployments", body.dump())) == "size_mismatch");
        CHECK(service.created.empty());
    }
    SUBCASE("an absent size is the stored blob's") {
        auto body = json::parse(deployment("index.html", digest));
        body["manifest"]["files"][0].erase("size");
        CHECK(call("POST", "/v1/apps/hello/deployments", body.dump()).status == 201);
        REQUIRE(service.created.size() == 1);
        CHECK(service.created[0].manifest.entries[0].size == 5);
        // The same tree as with the size given: equal digests.
        CHECK(service.created[0].manifest.digest() ==
              common::manifest_from_json(json::parse(deployment("index.html", digest))["manifest"])
                  ->digest());
    }
    SUBCASE("missing blob: 409 missing_blobs with the list") {
        const auto absent = common::sha256_hex("absent");
        const auto response = call("POST", "/v1/apps/hello/deployments", deployment("a", absent));
        CHECK(response.status == 409);
        CHECK(json::parse(response.body)["missing"] == json::array({absent}));
        CHECK(service.created.empty());
    }
    SUBCASE("config errors are 400 config with the parser's message") {
        const auto response = call("POST", "/v1/apps/hello/deployments",
                                   deployment("a", digest, "app = \"hello\"\n[run]\nprot = 3\n"));
        CHECK(response.status == 400);
        CHECK(code_of(response) == "config");
        CHECK(json::parse(response.body)["error"]["message"].get<std::string>().find(
                  "deploy.toml:3") != std::string::npos);
    }
    SUBCASE("config app must equal the path's app") {
        const auto response = call("POST", "/v1/apps/other/deployments", deployment("a", digest));
        CHECK(response.status == 400);
        CHECK(code_of(response) == "config");
    }
    SUBCASE("invalid app name") {
        const auto response = call("POST", "/v1/apps/Hello_/deployments", deployment("a", digest));
        CHECK(response.status == 400);
    }
    SUBCASE("malformed JSON: 400 with the parser's message") {
        const auto response = call("POST", "/v1/apps/hello/deployments", "{\"config\": ");
        CHECK(response.status == 400);
        CHECK(json::parse(response.body)["error"]["message"].get<std::string>().find(
                  "parse error") != std::string::npos);
    }
    SUBCASE("a number too large for a double: 400, not 500") { // found by fuzz/api_request
        for (const char* body : {"{\"config\": 1e999}", "[-1e400]", "1E+99999"}) {
            CAPTURE(body);
            const auto response = call("POST", "/v1/apps/hello/deployments", body);
            CHECK(response.status == 400);
            CHECK(code_of(response) == "bad_request");
            CHECK(json::parse(response.body)["error"]["message"].get<std::string>().find(
                      "number overflow") != std::string::npos);
        }
    }
    SUBCASE("a manifest mode that is not a string: 400, not 500") { // found by fuzz/manifest
        auto body = json::parse(deployment("a", digest));
        body["manifest"]["files"][0]["mode"] = 1;
        const auto response = call("POST", "/v1/apps/hello/deployments", body.dump());
        CHECK(response.status == 400);
        CHECK(code_of(response) == "bad_request");
    }
    SUBCASE("a requested release id: passed on; taken: 409 release_taken with the next one") {
        auto body = json::parse(deployment("a", digest));
        body["release"] = "v7";
        CHECK(call("POST", "/v1/apps/hello/deployments", body.dump()).status == 201);
        REQUIRE(service.created.size() == 1);
        CHECK(service.created[0].release == "v7");
        body["release"] = "v3";
        const auto taken = call("POST", "/v1/apps/hello/deployments", body.dump());
        CHECK(taken.status == 409);
        CHECK(code_of(taken) == "release_taken");
        CHECK(json::parse(taken.body)["next_release"] == "v7");
        // Refused for another reason, the free id asked for: that reason, not release_taken.
        service.refusal = "hello has a canary release, v6 (20% of the traffic); finish it first";
        body["release"] = "v7";
        const auto canary = call("POST", "/v1/apps/hello/deployments", body.dump());
        CHECK(canary.status == 409);
        CHECK(code_of(canary) == "refused");
        CHECK(json::parse(canary.body)["error"]["message"] == service.refusal);
        CHECK_FALSE(json::parse(canary.body).contains("next_release"));
        service.refusal.clear();
        for (const json& bad : {json("7"), json("v07"), json(7), json("v1x")}) {
            CAPTURE(bad.dump());
            body["release"] = bad;
            const auto response = call("POST", "/v1/apps/hello/deployments", body.dump());
            CHECK(response.status == 400);
            CHECK(code_of(response) == "bad_request");
        }
        CHECK(service.created.size() == 1);
    }
    SUBCASE("wrong types") {
        CHECK(call("POST", "/v1/apps/hello/deployments", R"({"config": 1})").status == 400);
        CHECK(call("POST", "/v1/apps/hello/deployments", "[1]").status == 400);
    }
    CHECK(!std::filesystem::exists(dir.path() / "apps"));
}

TEST_CASE_FIXTURE(Fixture,
                  "POST deployments of what PRODUCTION serves: 200 unchanged, unless force") {
    const auto digest = common::sha256_hex("hello");
    REQUIRE(blobs.put(digest, "hello").ok());
    common::Manifest manifest;
    manifest.entries.push_back({"index.html", common::EntryKind::file, digest, 5, ""});
    add_release("v4", common::State::production);
    service.production = "v4";
    service.releases[0].commit = "abc";
    service.releases[0].tree_digest = manifest.digest();
    service.releases[0].config_digest = common::sha256_hex(k_config);

    SUBCASE("the same tree and config: the serving release, nothing created") {
        const auto response =
            call("POST", "/v1/apps/hello/deployments", deployment("index.html", digest));
        CHECK(response.status == 200);
        const auto body = json::parse(response.body);
        CHECK(body["unchanged"] == true);
        CHECK(body["release"] == "v4");
        CHECK(body["state"] == "PRODUCTION");
        CHECK(body["commit"] == "abc");
        CHECK(body["url"] == "http://hello.localhost:8080/");
        CHECK(service.created.empty());
    }
    SUBCASE("\"force\": true creates a release anyway") {
        auto body = json::parse(deployment("index.html", digest));
        body["force"] = true;
        const auto response = call("POST", "/v1/apps/hello/deployments", body.dump());
        CHECK(response.status == 201);
        CHECK(service.created.size() == 1);
        CHECK(service.created[0].force);
    }
    SUBCASE("\"force\" must be a boolean") {
        auto body = json::parse(deployment("index.html", digest));
        body["force"] = "yes";
        CHECK(call("POST", "/v1/apps/hello/deployments", body.dump()).status == 400);
        CHECK(service.created.empty());
    }
    SUBCASE("another config: a new release") {
        const auto response = call("POST", "/v1/apps/hello/deployments",
                                   deployment("index.html", digest, k_config + "# changed\n"));
        CHECK(response.status == 201);
        CHECK(service.created.size() == 1);
    }
    SUBCASE("another tree: a new release") {
        const auto response =
            call("POST", "/v1/apps/hello/deployments", deployment("other.html", digest));
        CHECK(response.status == 201);
        CHECK(service.created.size() == 1);
    }
    SUBCASE("the same tree as a release that is not PRODUCTION: a new release") {
        service.releases[0].state = common::State::inactive;
        service.production.reset();
        const auto response =
            call("POST", "/v1/apps/hello/deployments", deployment("index.html", digest));
        CHECK(response.status == 201);
    }
    SUBCASE("a PRODUCTION release without digests (made before they were recorded)") {
        service.releases[0].tree_digest.clear();
        service.releases[0].config_digest.clear();
        const auto response =
            call("POST", "/v1/apps/hello/deployments", deployment("index.html", digest));
        CHECK(response.status == 201);
    }
}

TEST_CASE_FIXTURE(Fixture, "blob and app endpoints map service errors") {
    SUBCASE("missing digests") {
        const auto have = common::sha256_hex("x");
        REQUIRE(blobs.put(have, "x").ok());
        const auto lack = common::sha256_hex("y");
        auto response =
            call("POST", "/v1/blobs/missing", json{{"digests", {have, lack, lack}}}.dump());
        CHECK(response.status == 200);
        CHECK(json::parse(response.body)["missing"] == json::array({lack}));
        response = call("POST", "/v1/blobs/missing", R"({"digests": ["../etc"]})");
        CHECK(response.status == 400);
    }
    SUBCASE("unknown app") {
        const auto response = call("GET", "/v1/apps/nope");
        CHECK(response.status == 404);
        CHECK(json::parse(response.body)["error"]["message"] ==
              "no app named 'nope' on this agent");
    }
    SUBCASE("refused is 409") {
        CHECK(call("DELETE", "/v1/apps/hello/releases/v1").status == 409);
        CHECK(call("POST", "/v1/apps/hello/rollback", "").status == 409);
        CHECK(call("POST", "/v1/apps/hello/rollback", R"({"release": "x/../y"})").status == 400);
    }
    SUBCASE("release ids are checked") {
        CHECK(call("GET", "/v1/apps/hello/releases/..").status == 404);
    }
}

TEST_CASE_FIXTURE(Fixture, "events stream: the event log, then done once settled") {
    const agent::DataDir data(dir.path());
    append(data.event_log("hello", "v1"),
           R"({"event":"state","release":"v1","state":"QUEUED"})"
           "\n"
           R"({"event":"log","release":"v1","stream":"build","line":"hi"})"
           "\n");

    SUBCASE("unknown release is 404 before any stream") {
        CHECK(call("GET", "/v1/apps/hello/releases/v9/events").status == 404);
    }
    SUBCASE("settled: lines then done") {
        add_release("v1", common::State::failed);
        service.releases[0].error = "build failed";
        const auto response = call("GET", "/v1/apps/hello/releases/v1/events");
        REQUIRE(response.stream);
        CHECK(response.content_type == "application/x-ndjson");
        CollectSink sink;
        response.stream(sink);
        REQUIRE(sink.lines.size() == 3);
        const auto done = json::parse(sink.lines[2]);
        CHECK(done["event"] == "done");
        CHECK(done["state"] == "FAILED");
        CHECK(done["error"] == "build failed");
    }
    SUBCASE("not settled, no follow: lines only") {
        add_release("v1", common::State::building);
        CollectSink sink;
        call("GET", "/v1/apps/hello/releases/v1/events").stream(sink);
        CHECK(sink.lines.size() == 2);
    }
    SUBCASE("follow: tails until settled, including the settling state line") {
        std::thread writer;
        add_release("v1", common::State::building);
        service.on_release = [&](int calls) {
            if (calls == 5) {
                append(data.event_log("hello", "v1"),
                       R"({"event":"log","release":"v1","stream":"build","line":"more"})"
                       "\n");
            }
            if (calls == 8) {
                service.releases[0].state = common::State::production;
                // The engine writes the state line just after committing the state.
                writer = std::thread([&] {
                    std::this_thread::sleep_for(std::chrono::milliseconds(30));
                    append(data.event_log("hello", "v1"),
                           R"({"event":"state","release":"v1","state":"PRODUCTION"})"
                           "\n");
                });
            }
        };
        CollectSink sink;
        call("GET", "/v1/apps/hello/releases/v1/events?follow=1").stream(sink);
        writer.join();
        REQUIRE(sink.lines.size() == 5);
        CHECK(json::parse(sink.lines[2])["line"] == "more");
        CHECK(json::parse(sink.lines[3])["state"] == "PRODUCTION");
        CHECK(json::parse(sink.lines[4])["event"] == "done");
        CHECK(json::parse(sink.lines[4])["url"] == "http://hello.localhost:8080/");
    }
    SUBCASE("follow: a written event wakes the follower at once, not at its next poll") {
        // A 10 s poll: only the engine's signal of a written event (EventLog) can end the
        // stream within the 3 s allowed here.
        context.poll_interval = std::chrono::seconds(10);
        add_release("v1", common::State::building);
        std::atomic<bool> committed{false}; // the state, as the store would give it
        service.on_release = [&](int) {
            if (committed)
                service.releases[0].state = common::State::production;
        };
        const agent::EventLog events(data.event_log("hello", "v1"), "v1");
        std::thread engine([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            events.log("build", "more");
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            committed = true; // committed, then written
            events.state(common::State::production);
        });
        const auto began = std::chrono::steady_clock::now();
        CollectSink sink;
        call("GET", "/v1/apps/hello/releases/v1/events?follow=1").stream(sink);
        const auto took = std::chrono::steady_clock::now() - began;
        engine.join();
        CHECK(took < std::chrono::seconds(3));
        REQUIRE(sink.lines.size() == 5);
        CHECK(json::parse(sink.lines[2])["line"] == "more");
        CHECK(json::parse(sink.lines[3])["state"] == "PRODUCTION");
        CHECK(json::parse(sink.lines[4])["event"] == "done");
    }
}

TEST_CASE_FIXTURE(Fixture, "logs stream: build log events, then the app's output") {
    const agent::DataDir data(dir.path());
    add_release("v2", common::State::production);
    append(data.event_log("hello", "v2"),
           R"({"event":"state","release":"v2","state":"BUILDING"})"
           "\n"
           R"({"event":"log","release":"v2","stream":"build","line":"compiling"})"
           "\n");
    append(data.app_log("hello", "v2"), "2026-12-04T10:00:00.000001Z listening\npartial");
    // The "line" of each event ?release=v2&QUERY sends.
    auto lines_of = [&](const std::string& query) {
        CollectSink sink;
        call("GET", "/v1/apps/hello/logs?release=v2&" + query).stream(sink);
        std::vector<std::string> out;
        for (const auto& line : sink.lines)
            out.push_back(json::parse(line)["line"]);
        return out;
    };

    SUBCASE("no production release and none named") {
        CHECK(call("GET", "/v1/apps/hello/logs").status == 404);
    }
    SUBCASE("default release is production") {
        service.production = "v2";
        CollectSink sink;
        call("GET", "/v1/apps/hello/logs").stream(sink);
        REQUIRE(sink.lines.size() == 2);
        CHECK(json::parse(sink.lines[0])["line"] == "compiling");
        CHECK(json::parse(sink.lines[1]) == json{{"event", "log"},
                                                 {"ts", "2026-12-04T10:00:00.000001Z"},
                                                 {"release", "v2"},
                                                 {"process", "web"},
                                                 {"stream", "app"},
                                                 {"line", "listening"}});
    }
    SUBCASE("named release") {
        CollectSink sink;
        call("GET", "/v1/apps/hello/logs?release=v2").stream(sink);
        CHECK(sink.lines.size() == 2);
        CHECK(call("GET", "/v1/apps/hello/logs?release=v7").status == 404);
    }
    SUBCASE("grep and lines pick the lines on the agent") {
        CHECK(lines_of("grep=list") == std::vector<std::string>{"listening"});
        CHECK(lines_of("grep=%5Ecomp") == std::vector<std::string>{"compiling"});
        CHECK(lines_of("grep=nothing").empty());
        CHECK(lines_of("lines=1") == std::vector<std::string>{"listening"});
        CHECK(lines_of("lines=5") == std::vector<std::string>{"compiling", "listening"});
        CHECK(lines_of("grep=i&lines=1") == std::vector<std::string>{"listening"});
        CHECK(lines_of("lines=0").empty());
        auto bad = call("GET", "/v1/apps/hello/logs?release=v2&grep=(");
        CHECK(bad.status == 400);
        CHECK(bad.body.find("grep: missing closing parenthesis") != std::string::npos);
        CHECK(call("GET", "/v1/apps/hello/logs?release=v2&lines=x").status == 400);
    }
    SUBCASE("since and until keep the lines of a time range") {
        // Build events at 09:59, app lines at 10:00, 10:05 (unstamped: no time), 10:10, now.
        append(
            data.event_log("hello", "v2"),
            R"({"event":"log","release":"v2","stream":"build","line":"linking","ts":"2026-12-04T09:59:00.000Z"})"
            "\n");
        append(data.app_log("hello", "v2"), "\n2026-12-04T10:05:00.000000Z five\nno stamp\n"
                                            "2026-12-04T10:10:00.000000Z ten\n" +
                                                agent::logs::stamp_now() + "just now\n");
        using lines = std::vector<std::string>;
        // "compiling" (an event without "ts") and "partial", "no stamp" have no time.
        CHECK(lines_of("since=2026-12-04T09:58:00Z&until=2026-12-04T10:06:00Z") ==
              lines{"linking", "listening", "five"});
        CHECK(lines_of("") == lines{"compiling", "linking", "listening", "partial", "five",
                                    "no stamp", "ten", "just now"});
        CHECK(lines_of("since=2026-12-04T10:04:00Z&until=2026-12-04T10:06:00Z") == lines{"five"});
        CHECK(lines_of("since=2026-12-04T10:04:00Z&until=2026-12-04T10:30:00Z") ==
              lines{"five", "ten"});
        CHECK(lines_of("since=2026-12-04%2010:04") == lines{"five", "ten", "just now"});
        CHECK(lines_of("since=10m") == lines{"just now"});
        CHECK(lines_of("until=2026-12-04T09:59:30Z") == lines{"linking"});
        CHECK(lines_of("since=2026-12-04T10:04:00Z&grep=%5Et") == lines{"ten"});
        CHECK(lines_of("since=2026-12-04T10:04:00Z&lines=1") == lines{"just now"});
        auto bad = call("GET", "/v1/apps/hello/logs?release=v2&since=yesterday");
        CHECK(bad.status == 400);
        CHECK(bad.body.find("since: 'yesterday' is neither a time") != std::string::npos);
        CHECK(call("GET", "/v1/apps/hello/logs?release=v2&until=1h&follow=1").status == 400);
    }
}

TEST_CASE_FIXTURE(Fixture, "deeply nested JSON is refused before it is parsed or echoed") {
    const auto nested = [](int depth, const std::string& key) {
        return "{\"" + key + "\":" + std::string(depth, '[') + std::string(depth, ']') + "}";
    };
    for (const auto& [target, key] : std::vector<std::pair<std::string, std::string>>{
             {"/v1/blobs/missing", "digests"},
             {"/v1/apps/hello/rollback", "release"},
             {"/v1/apps/hello/deployments", "manifest"}}) {
        CAPTURE(target);
        const auto response = call("POST", target, nested(100000, key));
        CHECK(response.status == 400);
        CHECK(code_of(response) == "bad_request");
        CHECK(response.body.find("nested deeper than 64 levels") != std::string::npos);
    }
    // Brackets inside strings are text, not nesting.
    const auto in_string =
        call("POST", "/v1/blobs/missing", "{\"digests\": [\"" + std::string(1000, '[') + "\"]}");
    CHECK(in_string.status == 400);
    CHECK(in_string.body.find("nested deeper") == std::string::npos);
    CHECK(in_string.body.find("not a sha256 digest") != std::string::npos);
    // Non-string values are described by type, never serialized back.
    const auto object = call("POST", "/v1/blobs/missing", R"({"digests": [{"a": [1, 2]}]})");
    CHECK(object.body.find("not a sha256 digest: a JSON object") != std::string::npos);
}

TEST_CASE_FIXTURE(Fixture, "env routes: set, list without secret values, unset; bad bodies 400") {
    const std::string secret = "topsecret-value-123";
    auto set = call("POST", "/v1/apps/hello/env",
                    json{{"vars",
                          {{{"name", "API_KEY"}, {"value", secret}, {"secret", true}},
                           {{"name", "MODE"}, {"value", "fast"}}}}}
                        .dump());
    REQUIRE(set.status == 200);
    CHECK(set.body.find(secret) == std::string::npos);
    CHECK(json::parse(set.body)["set"] == json{"API_KEY", "MODE"});
    REQUIRE(service.env_set.size() == 2);
    CHECK(service.env_set[0].value == secret);
    CHECK(service.env_set[0].secret);
    CHECK_FALSE(service.env_set[1].secret);

    auto listed = call("GET", "/v1/apps/hello/env");
    REQUIRE(listed.status == 200);
    CHECK(listed.body.find(secret) == std::string::npos);
    auto vars = json::parse(listed.body)["vars"];
    CHECK_FALSE(vars[0].contains("value"));
    CHECK(vars[0]["secret"] == true);
    CHECK(vars[1]["value"] == "fast");

    auto unset = call("DELETE", "/v1/apps/hello/env/MODE");
    CHECK(unset.status == 200);
    CHECK(service.env_unset == std::vector<std::string>{"MODE"});

    for (const std::string body :
         {"", "{}", R"({"vars":[]})", R"({"vars":{}})", R"({"vars":[{"name":"A"}]})",
          R"({"vars":[{"name":"A","value":5}]})",
          R"({"vars":[{"name":"A","value":"a-long-value-here","secret":"yes"}]})"}) {
        CAPTURE(body);
        auto bad = call("POST", "/v1/apps/hello/env", body);
        CHECK(bad.status == 400);
        CHECK(bad.body.find("a-long-value-here") == std::string::npos);
    }
    CHECK(service.env_set.size() == 2); // nothing more reached the service
    CHECK(call("GET", "/v1/apps/Bad_App/env").status == 400);
}

TEST_CASE_FIXTURE(Fixture, "stop, start, restart and destroy answer what the service did") {
    auto response = call("POST", "/v1/apps/hello/stop");
    CHECK(response.status == 200);
    auto body = json::parse(response.body);
    CHECK(body["state"] == "stopped");
    CHECK(body["changed"] == true);
    CHECK(body["pid"].is_null());
    response = call("POST", "/v1/apps/hello/start", "{}");
    body = json::parse(response.body);
    CHECK(body["changed"] == false);
    CHECK(body["pid"] == 42);
    CHECK(call("POST", "/v1/apps/nope/stop").status == 404);
    CHECK(call("POST", "/v1/apps/hello/restart").status == 500);
    CHECK(call("POST", "/v1/apps/hello/stop", "[1").status == 400);
    response = call("DELETE", "/v1/apps/hello");
    CHECK(response.status == 200);
    body = json::parse(response.body);
    CHECK(body["destroyed"] == "hello");
    CHECK(body["releases"] == json::array({"v2", "v1"}));
    CHECK(body["blobs_removed"] == 3);
    CHECK(body["blobs_kept"] == 1);
    CHECK(service.actions == std::vector<std::string>{"stop", "start", "destroy"});
    CHECK(router.match("DELETE", "/v1/apps/hello").route->access == agent::api::Access::admin);
    CHECK(router.match("POST", "/v1/apps/hello/stop").route->access ==
          agent::api::Access::by_method);
}

TEST_CASE_FIXTURE(Fixture, "cron routes: list the jobs, run one now, refusals") {
    auto response = call("GET", "/v1/apps/hello/cron");
    REQUIRE(response.status == 200);
    auto body = json::parse(response.body);
    CHECK(body["app"] == "hello");
    REQUIRE(body["jobs"].size() == 2);
    CHECK(body["jobs"][0] == json{{"name", "tick"},
                                  {"schedule", "* * * * *"},
                                  {"timezone", "UTC"},
                                  {"command", "./tick"},
                                  {"running", false},
                                  {"next_run", "2026-01-01T10:01:00Z"},
                                  {"inactive", nullptr},
                                  {"last_run", nullptr}});
    CHECK(body["jobs"][1]["next_run"].is_null());
    CHECK(body["jobs"][1]["inactive"] == "another host of the target runs it");
    CHECK(body["jobs"][1]["last_run"] == json{{"started", "2026-01-01T09:00:00Z"},
                                              {"finished", "2026-01-01T09:00:02Z"},
                                              {"exit", 1},
                                              {"duration_ms", 2000},
                                              {"outcome", "failed"},
                                              {"release", "v2"}});
    CHECK(call("GET", "/v1/apps/nope/cron").status == 404);

    response = call("POST", "/v1/apps/hello/cron/tick/runs", "{}");
    CHECK(response.status == 202);
    CHECK(json::parse(response.body) == json{{"app", "hello"},
                                             {"job", "tick"},
                                             {"release", "v2"},
                                             {"log", "/data/apps/hello/logs/cron.tick.log"}});
    CHECK(service.actions == std::vector<std::string>{"cron hello tick"});
    CHECK(call("POST", "/v1/apps/hello/cron/busy/runs").status == 409);
    CHECK(call("POST", "/v1/apps/hello/cron/other/runs").status == 404);
    CHECK(call("POST", "/v1/apps/hello/cron/Bad_Name/runs").status == 404);
    CHECK(router.match("POST", "/v1/apps/hello/cron/tick/runs").route->access ==
          agent::api::Access::by_method); // deploy scope
}

TEST_CASE_FIXTURE(Fixture, "logs ?process=cron.NAME streams that job's log; unknown ones 404") {
    const agent::DataDir data(dir.path());
    append(data.cron_log("hello", "tick"), "--- cron tick: started ---\nticked\n");
    CollectSink sink;
    auto response = call("GET", "/v1/apps/hello/logs?process=cron.tick");
    REQUIRE(response.status == 200);
    response.stream(sink);
    REQUIRE(sink.lines.size() == 2);
    CHECK(json::parse(sink.lines[1]) == json{{"event", "log"},
                                             {"release", ""},
                                             {"process", "cron.tick"},
                                             {"stream", "cron.tick"},
                                             {"line", "ticked"}});
    response = call("GET", "/v1/apps/hello/logs?process=cron.nope");
    CHECK(response.status == 404);
    CHECK(json::parse(response.body)["error"]["message"].get<std::string>().find(
              "its processes: cron.tick, cron.report") != std::string::npos);
    CHECK(call("GET", "/v1/apps/hello/logs?process=web").status == 404);
    CHECK(call("GET", "/v1/apps/nope/logs?process=cron.tick").status == 404);
}

TEST_CASE_FIXTURE(Fixture, "trees/missing: a tree known whole is looked at again after a "
                           "collection removed a blob") {
    const auto digest = common::sha256_hex("hello");
    REQUIRE(blobs.put(digest, "hello"));
    // A release's stored tree: its one node kept as a blob, as Engine::record_blobs does.
    const std::string node = json::array({json::array({"a.txt", "f", digest, 5})}).dump();
    const auto root = common::sha256_hex(node);
    REQUIRE(blobs.put(root, node));
    const auto ask = [&] {
        auto answer = call("POST", "/v1/trees/missing", json{{"roots", {root}}}.dump());
        REQUIRE(answer.status == 200);
        return json::parse(answer.body)["missing_nodes"];
    };
    CHECK(ask().empty()); // whole: read, every blob looked at
    CHECK(ask().empty()); // whole: known
    // A collection takes the file's blob (the deploy that pinned it went away).
    blobs.unpin({root, digest});
    REQUIRE(blobs.collect({root}, false).size() == 1);
    CHECK_FALSE(blobs.has(digest));
    // Not whole any more: the root is reported missing, so the client sends the tree.
    CHECK(ask() == json::array({root}));
}

TEST_CASE_FIXTURE(Fixture, "trees/missing: many nodes at once, their files looked for "
                           "together, the first bad node in order refused") {
    // 200 folders of 30 files each (parsed by several threads): the files of every tenth
    // folder are stored, the others are not; one subfolder is stored whole.
    std::vector<std::string> nodes;
    std::set<std::string> expected_missing;
    for (int n = 0; n < 200; ++n) {
        auto entries = json::array();
        for (int f = 0; f < 30; ++f) {
            const auto content = "folder " + std::to_string(n) + " file " + std::to_string(f);
            const auto digest = common::sha256_hex(content);
            if (n % 10 == 0)
                REQUIRE(blobs.put(digest, content));
            else
                expected_missing.insert(digest);
            entries.push_back(
                json::array({"f" + std::to_string(100 + f), "f", digest, content.size()}));
        }
        nodes.push_back(entries.dump());
    }
    const std::string inner =
        json::array({json::array({"z.txt", "f", common::sha256_hex("hello"), 5})}).dump();
    REQUIRE(blobs.put(common::sha256_hex("hello"), "hello"));
    REQUIRE(blobs.put(common::sha256_hex(inner), inner));
    const std::string outer = json::array({json::array({"inner", "d", common::sha256_hex(inner)}),
                                           json::array({"lost", "d", common::sha256_hex("lost")})})
                                  .dump();
    nodes.push_back(outer);
    auto answer = call("POST", "/v1/trees/missing", json{{"nodes", nodes}}.dump());
    REQUIRE(answer.status == 200);
    const auto body = json::parse(answer.body);
    CHECK(body["missing_nodes"] == json::array({common::sha256_hex("lost")}));
    const auto missing = body["missing_blobs"].get<std::vector<std::string>>();
    CHECK(missing.size() == expected_missing.size()); // each once
    CHECK(std::set<std::string>(missing.begin(), missing.end()) == expected_missing);

    // A malformed node and, after it, one with a path the store refuses: the first is
    // the answer, whichever thread parsed it.
    auto bad = nodes;
    bad[150] = "[[\"a\", \"f\"]]";
    bad[170] = json::array({json::array({"a\x01", "f", common::sha256_hex("x"), 1})}).dump();
    answer = call("POST", "/v1/trees/missing", json{{"nodes", bad}}.dump());
    CHECK(answer.status == 400);
    CHECK(json::parse(answer.body)["error"]["code"] == "bad_request");
    bad[150] = nodes[150];
    answer = call("POST", "/v1/trees/missing", json{{"nodes", bad}}.dump());
    CHECK(answer.status == 400);
    CHECK(json::parse(answer.body)["error"]["code"] == "bad_path");
}
