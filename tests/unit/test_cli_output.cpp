#include <cli/output/format.hpp>
#include <cli/output/json_events.hpp>
#include <cli/transport/http_client.hpp>

#include <doctest/doctest.h>

#include <sstream>

using nlohmann::json;
namespace out = cli::output;

TEST_CASE("upload_event has the documented fields") {
    out::UploadStats s{12, 10, 2, 3481, 1100, 1100};
    auto e = out::upload_event("http://127.0.0.1:7070", s);
    CHECK(e["event"] == "upload");
    CHECK(e["files"] == 12);
    CHECK(e["blobs_total"] == 10);
    CHECK(e["blobs_missing"] == 2);
    CHECK(e["bytes_total"] == 3481);
    CHECK(e["bytes_sent"] == 1100);
    CHECK(e["host"] == "http://127.0.0.1:7070");
}

TEST_CASE("done_event: url and error are null when absent") {
    out::DoneInfo live{"h",  "v4", "PRODUCTION", "http://hello.localhost:8080/", std::nullopt,
                       3200, ""};
    auto e = out::done_event(live);
    CHECK(e["event"] == "done");
    CHECK(e["release"] == "v4");
    CHECK(e["state"] == "PRODUCTION");
    CHECK(e["url"] == "http://hello.localhost:8080/");
    CHECK(e["error"].is_null());
    CHECK(e["elapsed_ms"] == 3200);
    CHECK_FALSE(e.contains("previous"));

    out::DoneInfo failed{"h", "v5", "FAILED", "", std::string("build failed"), 10, ""};
    auto f = out::done_event(failed);
    CHECK(f["url"].is_null());
    CHECK(f["error"] == "build failed");
}

TEST_CASE("error_event carries the code and the exit code") {
    auto e = out::error_event({common::ErrorKind::connection, "cannot reach the agent"}, "");
    CHECK(e == json{{"event", "error"},
                    {"code", "connection"},
                    {"message", "cannot reach the agent"},
                    {"exit_code", 3}});
    auto r = out::error_event({common::ErrorKind::refused, "no"}, "https://a:1");
    CHECK(r["exit_code"] == 5);
    CHECK(r["host"] == "https://a:1");
}

TEST_CASE("agent events pass through with the host added") {
    json ev = {
        {"event", "log"}, {"release", "v4"}, {"stream", "build"}, {"line", "ok"}, {"ts", "t"}};
    auto e = out::passthrough_event(ev, "https://a:1");
    CHECK(e["host"] == "https://a:1");
    CHECK(e["line"] == "ok");
    CHECK(e.size() == ev.size() + 1);
}

TEST_CASE("release_row and status_object keep the documented keys only") {
    json release = {{"id", "v3"},
                    {"app", "hello"},
                    {"state", "PRODUCTION"},
                    {"created_at", "2026-11-23T09:00:00.000Z"},
                    {"updated_at", "x"},
                    {"commit", "3f2c"},
                    {"message", "Fix header"},
                    {"error", nullptr},
                    {"port", 1}};
    auto row = out::release_row(release, "");
    CHECK(row == json{{"id", "v3"},
                      {"state", "PRODUCTION"},
                      {"created_at", "2026-11-23T09:00:00.000Z"},
                      {"commit", "3f2c"},
                      {"message", "Fix header"},
                      {"error", nullptr}});
    json status = {{"app", "hello"},
                   {"production", "v3"},
                   {"url", "http://hello.localhost:8080/"},
                   {"domains", json::array()},
                   {"releases", json::array({release})}};
    auto s = out::status_object(status, "h");
    CHECK(s["app"] == "hello");
    CHECK(s["production"] == "v3");
    CHECK(s["host"] == "h");
    REQUIRE(s["releases"].size() == 1);
    CHECK(s["releases"][0] == row);
}

TEST_CASE("the JSON printer writes one object per line") {
    std::ostringstream o, e;
    auto p = out::make_json_printer(o, e);
    p->uploaded("h", out::UploadStats{});
    p->agent_event("h", json{{"event", "state"}, {"state", "BUILDING"}});
    p->error({common::ErrorKind::failed, "v4 failed: build failed"}, "");
    std::istringstream lines(o.str());
    std::string line;
    int n = 0;
    while (std::getline(lines, line)) {
        auto parsed = json::parse(line);
        CHECK(parsed.contains("event"));
        ++n;
    }
    CHECK(n == 3);
    CHECK(e.str() == "error: v4 failed: build failed\n");
}

TEST_CASE("the human printer: -q prints only the URL, errors go to stderr") {
    std::ostringstream o, e;
    out::HumanStyle style;
    style.quiet = true;
    auto p = out::make_human_printer(style, o, e);
    p->packaged({"hello", "3f2c1a0ffff", "Fix header", 12, 3481, false});
    p->agent_event("h", json{{"event", "log"}, {"stream", "build"}, {"line", "x"}});
    p->done({"h", "v4", "PRODUCTION", "http://hello.localhost:8080/", std::nullopt, 3200, ""});
    p->error({common::ErrorKind::connection, "cannot reach"}, "");
    CHECK(o.str() == "http://hello.localhost:8080/\n");
    CHECK(e.str() == "error: cannot reach\n");
}

TEST_CASE("the human printer's deploy lines") {
    std::ostringstream o, e;
    auto p = out::make_human_printer({}, o, e);
    p->packaged({"hello", "3f2c1a0ffff", "Fix header", 12, 3481, false});
    p->uploading("h", out::UploadStats{12, 10, 2, 3481, 1126, 0});
    p->agent_event("h", json{{"event", "log"}, {"stream", "build"}, {"line", "npm ci"}});
    p->done({"h", "v4", "PRODUCTION", "http://hello.localhost:8080/", std::nullopt, 3200, ""});
    CHECK(o.str() == "==> Packaging hello at 3f2c1a0 \"Fix header\" (12 files, 3.4 KiB)\n"
                     "==> Uploading 2 new files (1.1 KiB) of 12\n"
                     " build | npm ci\n"
                     "==> v4 is live at http://hello.localhost:8080/ (took 3.2s)\n");
}

TEST_CASE("format helpers") {
    CHECK(out::format_bytes(0) == "0 B");
    CHECK(out::format_bytes(1023) == "1023 B");
    CHECK(out::format_bytes(3481) == "3.4 KiB");
    CHECK(out::format_bytes(5u * 1024 * 1024) == "5.0 MiB");
    CHECK(out::format_elapsed(350) == "350ms");
    CHECK(out::format_elapsed(65'000) == "1m05s");
    CHECK(out::short_time("2026-11-23T09:00:00.000Z") == "2026-11-23 09:00:00");
}

TEST_CASE("agent error answers map to the exit codes of DESIGN §4") {
    using cli::transport::error_from_response;
    auto body = [](const char* code) {
        return json{{"error", {{"code", code}, {"message", "m"}}}}.dump();
    };
    CHECK(common::exit_code(error_from_response(409, body("refused"), "u").kind) == 5);
    CHECK(common::exit_code(error_from_response(400, body("config"), "u").kind) == 2);
    CHECK(common::exit_code(error_from_response(400, body("bad_request"), "u").kind) == 2);
    CHECK(common::exit_code(error_from_response(404, body("not_found"), "u").kind) == 2);
    CHECK(common::exit_code(error_from_response(401, body("unauthorized"), "u").kind) == 3);
    CHECK(common::exit_code(error_from_response(403, "", "u").kind) == 3);
    CHECK(common::exit_code(error_from_response(500, body("internal"), "u").kind) == 1);
    CHECK(common::exit_code(error_from_response(502, "<html>", "u").kind) == 1);
    CHECK(error_from_response(409, body("refused"), "u").message == "m");
}
