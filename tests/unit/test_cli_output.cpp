#include <cli/output/format.hpp>
#include <cli/output/json_events.hpp>
#include <cli/output/printer.hpp>
#include <cli/output/progress.hpp>
#include <cli/transport/http_client.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <sstream>
#include <vector>

using nlohmann::json;
namespace out = cli::output;

TEST_CASE("upload_event has the documented fields") {
    out::UploadStats s{12, 10, 2, 3481, 1100, 1100, 0, ""};
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
                    {"port", 1},
                    {"served", json::array({{{"from", "t1"}, {"until", nullptr}}})}};
    auto row = out::release_row(release, "");
    CHECK(row == json{{"id", "v3"},
                      {"state", "PRODUCTION"},
                      {"created_at", "2026-11-23T09:00:00.000Z"},
                      {"commit", "3f2c"},
                      {"message", "Fix header"},
                      {"dirty", false},
                      {"error", nullptr},
                      {"standby", false},
                      {"served", json::array({{{"from", "t1"}, {"until", nullptr}}})}});
    release["standby"] = true; // INACTIVE and still running, unrouted
    CHECK(out::release_row(release, "")["standby"] == true);
    release.erase("standby");
    release["dirty"] = true;
    CHECK(out::release_row(release, "")["dirty"] == true);
    release["dirty"] = "yes"; // not a bool: not dirty
    CHECK(out::release_row(release, "")["dirty"] == false);
    release.erase("dirty");
    // An agent that does not say when releases served: an empty list.
    release.erase("served");
    CHECK(out::release_row(release, "")["served"] == json::array());
    release["served"] = json::array({{{"from", "t1"}, {"until", nullptr}}});
    json status = {{"app", "hello"},
                   {"production", "v3"},
                   {"previous", "v2"},
                   {"next_release", "v4"},
                   {"url", "http://hello.localhost:8080/"},
                   {"domains", json::array()},
                   {"releases", json::array({release})}};
    auto s = out::status_object(status, "h");
    CHECK(s["app"] == "hello");
    CHECK(s["production"] == "v3");
    CHECK(s["previous"] == "v2");
    CHECK(s["next_release"] == "v4");
    CHECK(s["host"] == "h");
    REQUIRE(s["releases"].size() == 1);
    CHECK(s["releases"][0] == row);
}

TEST_CASE("the JSON printer writes one object per line") {
    std::ostringstream o, e;
    auto p = out::make_json_printer(o, e);
    p->emit(out::Uploaded{"h", out::UploadStats{}});
    p->emit(out::AgentEvent{"h", json{{"event", "state"}, {"state", "BUILDING"}}});
    p->emit(out::Error{{common::ErrorKind::failed, "v4 failed: build failed"}, ""});
    std::istringstream lines(o.str());
    std::string line;
    int n = 0;
    while (std::getline(lines, line)) {
        auto parsed = json::parse(line);
        CHECK(parsed.contains("event"));
        CHECK(parsed["v"] == out::k_json_schema_version);
        ++n;
    }
    CHECK(n == 3);
    CHECK(e.str() == "error: v4 failed: build failed\n");
}

TEST_CASE("the JSON printer: releases and token ls print one array per agent, audit objects") {
    std::ostringstream o, e;
    auto p = out::make_json_printer(o, e);
    p->emit(out::Releases{"a", json::array({json{{"id", "v1"}, {"state", "PRODUCTION"}}})});
    p->emit(out::Tokens{"a", json::array({json{{"id", "3f2a"}}, json{{"id", "0b1c"}}})});
    p->emit(out::Tokens{"b", json::array({json{{"id", "77aa"}}})});
    p->emit(out::Audit{"a", json::array({json{{"id", 1}}, json{{"id", 2}}})});
    std::istringstream lines(o.str());
    std::vector<json> parsed;
    for (std::string line; std::getline(lines, line);)
        parsed.push_back(json::parse(line));
    REQUIRE(parsed.size() == 5);
    CHECK(parsed[0].is_array());
    REQUIRE(parsed[1].is_array());
    CHECK(parsed[1].size() == 2);
    for (const auto& token : parsed[1]) {
        CHECK(token["event"] == "token");
        CHECK(token["host"] == "a");
        CHECK(token["v"] == out::k_json_schema_version);
    }
    REQUIRE(parsed[2].is_array());
    CHECK(parsed[2][0]["host"] == "b");
    CHECK(parsed[3].is_object());
    CHECK(parsed[3]["event"] == "audit");
    CHECK(parsed[4].is_object());
}

TEST_CASE("login: a login event, never the token") {
    std::ostringstream o, e;
    auto p = out::make_json_printer(o, e);
    p->emit(out::LoggedIn{"https://h2:7443", "/home/u/.config/deployctl/credentials", true});
    auto event = json::parse(o.str());
    CHECK(event["event"] == "login");
    CHECK(event["host"] == "https://h2:7443");
    CHECK(event["file"] == "/home/u/.config/deployctl/credentials");
    CHECK(event["replaced"] == true);
    CHECK(event["v"] == out::k_json_schema_version);
    std::ostringstream ho, he;
    auto human = out::make_human_printer({}, ho, he);
    human->emit(out::LoggedIn{"https://h2:7443", "/c", false});
    CHECK(he.str() == "https://h2:7443 accepted the token; added its line in /c\n");
}

TEST_CASE("run: output events keep the bytes (invalid UTF-8 replaced), the exit event last") {
    std::ostringstream o, e;
    auto p = out::make_json_printer(o, e);
    p->emit(out::RunOutput{"h", "stdout", "caf\xc3\xa9 \xff\n"});
    p->emit(out::RunExit{"h", 137, 9, std::nullopt});
    std::istringstream lines(o.str());
    std::string first, second;
    std::getline(lines, first);
    std::getline(lines, second);
    auto output = json::parse(first);
    CHECK(output["event"] == "output");
    CHECK(output["stream"] == "stdout");
    CHECK(output["data"] == "caf\xc3\xa9 \xef\xbf\xbd\n");
    CHECK(json::parse(second) ==
          json{{"event", "exit"}, {"status", 137}, {"signal", 9}, {"host", "h"}, {"v", 1}});
    // For people the bytes go as they came, to stdout or stderr.
    std::ostringstream ho, he;
    auto human = out::make_human_printer({}, ho, he);
    human->emit(out::RunOutput{"h", "stderr", "partial"});
    human->emit(out::RunOutput{"h", "stdout", "\xff"});
    human->emit(out::RunExit{"h", 0, std::nullopt, std::nullopt});
    CHECK(he.str() == "partial");
    CHECK(ho.str() == "\xff");
}

TEST_CASE("the human printer: -q prints only the URL, errors go to stderr") {
    std::ostringstream o, e;
    out::HumanStyle style;
    style.quiet = true;
    auto p = out::make_human_printer(style, o, e);
    p->emit(out::PackageSummary{"hello", "3f2c1a0ffff", "Fix header", 12, 3481, false});
    p->emit(out::AgentEvent{"h", json{{"event", "log"}, {"stream", "build"}, {"line", "x"}}});
    p->emit(out::Done{
        {"h", "v4", "PRODUCTION", "http://hello.localhost:8080/", std::nullopt, 3200, ""}});
    p->emit(out::Error{{common::ErrorKind::connection, "cannot reach"}, ""});
    CHECK(o.str() == "http://hello.localhost:8080/\n");
    CHECK(e.str() == "error: cannot reach\n");
}

TEST_CASE("the human printer's deploy lines") {
    std::ostringstream o, e;
    auto p = out::make_human_printer({}, o, e);
    p->emit(out::PackageSummary{"hello", "3f2c1a0ffff", "Fix header", 12, 3481, false});
    p->emit(out::Uploading{"h", out::UploadStats{12, 10, 2, 3481, 1126, 0, 0, ""}});
    p->emit(out::AgentEvent{"h", json{{"event", "log"}, {"stream", "build"}, {"line", "npm ci"}}});
    p->emit(out::Done{
        {"h", "v4", "PRODUCTION", "http://hello.localhost:8080/", std::nullopt, 3200, ""}});
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

TEST_CASE("agent error answers map to the exit codes of docs/design.md §6") {
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

TEST_CASE("every JSON line carries the schema version, arrays in each row") {
    std::ostringstream o, e;
    auto p = out::make_json_printer(o, e);
    p->emit(out::Version{"1.2.3"});
    p->emit(out::Releases{"h", json::array({json{{"id", "v1"}, {"state", "PRODUCTION"}}})});
    p->emit(out::Status{"h", json{{"app", "hello"}}});
    p->emit(out::UploadProgress{"h", 10, 100}); // no line: progress is for terminals
    std::istringstream lines(o.str());
    std::string line;
    std::vector<json> parsed;
    while (std::getline(lines, line))
        parsed.push_back(json::parse(line));
    REQUIRE(parsed.size() == 3);
    CHECK(parsed[0] == json{{"event", "version"}, {"version", "1.2.3"}, {"v", 1}});
    REQUIRE(parsed[1].is_array());
    CHECK(parsed[1][0]["v"] == 1);
    CHECK(parsed[1][0]["id"] == "v1");
    CHECK(parsed[2]["event"] == "status");
    CHECK(parsed[2]["v"] == 1);
    CHECK(out::with_schema_version(json{{"v", 7}})["v"] == 1);
}

TEST_CASE("upload rate and ETA") {
    using std::chrono::milliseconds;
    using std::chrono::seconds;
    CHECK(out::transfer_rate(1000, milliseconds(0)) == 0);
    CHECK(out::transfer_rate(1000, milliseconds(500)) == doctest::Approx(2000));
    CHECK(out::transfer_rate(3u << 20, milliseconds(1500)) == doctest::Approx(2097152));
    CHECK_FALSE(out::eta(0, 100, 0).has_value()); // no rate yet
    CHECK(out::eta(100, 100, 0) == seconds(0));   // done
    CHECK(out::eta(50, 100, 10) == seconds(5));
    CHECK(out::eta(50, 100, 30) == seconds(2)); // 1.67 s rounds up
    CHECK(out::eta(1, 1u << 30, 1024.0 * 1024) == seconds(1024));
    CHECK(out::format_eta(seconds(0)) == "0s");
    CHECK(out::format_eta(seconds(59)) == "59s");
    CHECK(out::format_eta(seconds(185)) == "3m05s");
    CHECK(out::format_eta(seconds(3720)) == "1h02m");
}

TEST_CASE("the progress bar and the upload line") {
    CHECK(out::progress_bar(0, 100, 12) == "[>         ]");
    CHECK(out::progress_bar(50, 100, 12) == "[=====>    ]");
    CHECK(out::progress_bar(100, 100, 12) == "[==========]");
    CHECK(out::progress_bar(0, 0, 6) == "[====]");
    CHECK(out::progress_bar(200, 100, 6) == "[====]"); // never past full
    CHECK(out::progress_bar(1, 2, 2).empty());
    CHECK(out::upload_progress_text(512 * 1024, 1024 * 1024, std::chrono::milliseconds(1000), 12) ==
          "[=====>    ]  50%  512.0 KiB / 1.0 MiB  512.0 KiB/s  ETA 1s");
    CHECK(out::upload_progress_text(0, 1024, std::chrono::milliseconds(0), 0) ==
          "  0%  0 B / 1.0 KiB  ETA ?");
    CHECK(out::upload_progress_text(512, 1024, std::chrono::milliseconds(100), 0) ==
          " 50%  512 B / 1.0 KiB  ETA ?"); // too early to tell
}

TEST_CASE("status line text is cut to the terminal width") {
    CHECK(out::visible_width("hello") == 5);
    CHECK(out::visible_width("\033[1;32mok\033[0m") == 2);
    CHECK(out::visible_width("⠋ → é") == 5);
    CHECK(out::truncate_to_width("hello", 5) == "hello");
    CHECK(out::truncate_to_width("hello world", 6) == "hello…");
    CHECK(out::truncate_to_width("→→→→", 3) == "→→…");
    CHECK(out::truncate_to_width("\033[1mbold text\033[0m", 5) == "\033[1mbold…\033[0m");
    CHECK(out::visible_width(out::truncate_to_width(std::string(300, 'x'), 80)) == 80);
    CHECK(out::truncate_to_width("abc", 0).empty());
}

TEST_CASE("the phase line shows where the release is and how long it took") {
    using std::chrono::milliseconds;
    CHECK(out::phase_text("v4", "BUILDING", milliseconds(12300), 0, false) ==
          "⠋ v4  QUEUED → [BUILDING] → PROVISIONING → PRODUCTION  12.3s");
    CHECK(out::phase_text("v4", "QUEUED", milliseconds(0), 1, false) ==
          "⠙ v4  [QUEUED] → BUILDING → PROVISIONING → PRODUCTION  0ms");
    auto colored = out::phase_text("v4", "PROVISIONING", milliseconds(1000), 0, true);
    CHECK(colored.find("\033[32mQUEUED\033[0m") != std::string::npos);
    CHECK(colored.find("\033[1;33m[PROVISIONING]\033[0m") != std::string::npos);
}

TEST_CASE("the status line erases itself around normal lines") {
    std::ostringstream term, err;
    {
        out::StatusLine status(term, [] { return std::size_t{20}; });
        status.show("Uploading 42% of a long long line");
        CHECK(term.str() ==
              "\r" + out::truncate_to_width("Uploading 42% of a long long line", 19) + "\033[K");
        term.str("");
        status.print(term, "==> a normal line");
        CHECK(term.str() == "\r\033[K==> a normal line\n\rUploading 42% of a…\033[K");
        term.str("");
        status.print(err, "warning: on stderr");
        CHECK(err.str() == "warning: on stderr\n");
        term.str("");
        status.show("");
        CHECK(term.str() == "\r\033[K");
        CHECK_FALSE(status.visible());
        status.show("again");
        term.str("");
    }
    CHECK(term.str() == "\r\033[K"); // erased at the end
}

namespace {

// What a deployment tells the printer: upload, phases, a build line, the end.
void play_deploy(out::Printer& p) {
    p.emit(out::Uploading{"h", out::UploadStats{3, 3, 2, 3000, 2048, 0, 0, ""}});
    p.emit(out::UploadProgress{"h", 1024, 2048});
    p.emit(out::UploadProgress{"h", 2048, 2048});
    p.emit(out::Uploaded{"h", out::UploadStats{3, 3, 2, 3000, 2048, 2048, 0, ""}});
    p.emit(out::Created{"h", "v4", "QUEUED"});
    p.emit(
        out::AgentEvent{"h", json{{"event", "state"}, {"release", "v4"}, {"state", "BUILDING"}}});
    p.emit(out::AgentEvent{"h", json{{"event", "log"}, {"stream", "build"}, {"line", "make"}}});
    p.emit(out::Done{
        {"h", "v4", "PRODUCTION", "http://hello.localhost:8080/", std::nullopt, 3200, ""}});
}

} // namespace

TEST_CASE("the human printer on a terminal: a live line, plain lines above it") {
    std::ostringstream o, e;
    out::HumanStyle style;
    style.live = true;
    {
        auto p = out::make_human_printer(style, o, e);
        play_deploy(*p);
    }
    const std::string text = o.str();
    CHECK(text.find("Uploading [") != std::string::npos);
    CHECK(text.find("100%") != std::string::npos);
    CHECK(text.find("[BUILDING]") != std::string::npos);
    CHECK(text.find("\033[K") != std::string::npos);
    CHECK(text.find("==> v4: BUILDING") == std::string::npos); // in place, not a line
    CHECK(text.find("\r\033[K build | make\n") != std::string::npos);
    CHECK(text.find("==> Uploaded 2.0 KiB in ") != std::string::npos);
    CHECK(text.find("==> v4 is live at http://hello.localhost:8080/") != std::string::npos);
    // The status line is gone before the URL, which ends the output.
    CHECK(text.substr(text.rfind("\r")) == "\r\033[K==> v4 is live at "
                                           "http://hello.localhost:8080/ (took 3.2s)\n");
}

TEST_CASE("the human printer off a terminal: no escape codes, no carriage returns") {
    std::ostringstream o, e;
    auto p = out::make_human_printer({}, o, e);
    play_deploy(*p);
    CHECK(o.str().find('\033') == std::string::npos);
    CHECK(o.str().find('\r') == std::string::npos);
    CHECK(o.str().find("==> v4: BUILDING\n") != std::string::npos);
    CHECK(o.str().find("==> Uploaded 2.0 KiB in ") != std::string::npos);
}

TEST_CASE("rollback of a release with a release command: a note, and a field in --json") {
    out::RolledBack rolled;
    rolled.release = "v2";
    rolled.state = "PRODUCTION";
    rolled.previous = "v3";
    rolled.release_command_skipped = true;
    auto e = out::done_event(rolled);
    CHECK(e["release_command_skipped"] == true);
    std::ostringstream o, err;
    auto p = out::make_human_printer({}, o, err);
    p->emit(rolled);
    CHECK(o.str() == "==> v2 is live again (was v3)\n"
                     "==> note: v2 has a release command; a rollback does not run it again\n");
    rolled.release_command_skipped = false;
    CHECK_FALSE(out::done_event(rolled).contains("release_command_skipped"));
}
