// deploy-proxy's access log (access_log.hpp): the line format, request ids,
// the per-worker buffer, the files and their rotation; the instance names of
// routes.json; reading the last lines back (logs/follow.hpp).
#include <agent/logs/follow.hpp>
#include <agent/proxy/access_log.hpp>
#include <agent/proxy/routes.hpp>
#include <common/fs.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>

#include "temp_dir.hpp"

using namespace agent::proxy;

namespace {

AccessRecord sample() {
    AccessRecord r;
    r.time = "2026-11-23T09:00:01.123Z";
    r.release = "v4";
    r.instance = "web.2";
    r.upstream = "127.0.0.1:41235";
    r.client = "203.0.113.9";
    r.method = "GET";
    r.host = "hello.example.com";
    r.path = "/?q=1";
    r.status = 200;
    r.duration_ms = 1.4821;
    r.bytes_in = 7;
    r.bytes_out = 5120;
    r.request_id = "abc";
    return r;
}

std::string read(const std::filesystem::path& path) {
    auto text = common::read_file(path);
    return text ? *text : std::string();
}

} // namespace

TEST_CASE("an access log line is one JSON object with every field") {
    std::string line;
    append_access_line(line, sample());
    REQUIRE(line.back() == '\n');
    CHECK(line.find('\n') == line.size() - 1);
    const auto json = nlohmann::json::parse(line);
    CHECK(json["time"] == "2026-11-23T09:00:01.123Z");
    CHECK(json["release"] == "v4");
    CHECK(json["instance"] == "web.2");
    CHECK(json["upstream"] == "127.0.0.1:41235");
    CHECK(json["client"] == "203.0.113.9");
    CHECK(json["method"] == "GET");
    CHECK(json["host"] == "hello.example.com");
    CHECK(json["path"] == "/?q=1");
    CHECK(json["status"] == 200);
    CHECK(json["duration_ms"].get<double>() == doctest::Approx(1.482));
    CHECK(json["bytes_in"] == 7);
    CHECK(json["bytes_out"] == 5120);
    CHECK(json["request_id"] == "abc");
}

TEST_CASE("whatever a client sends, an access log line stays valid JSON") {
    auto record = sample();
    const std::string path = std::string("/a\"b\\c\nd\x01\x7f\xc3\xa9\xff", 13);
    record.path = path;
    record.host = "x\"}{\"status\":1";
    std::string line;
    append_access_line(line, record);
    CHECK(line.find('\n') == line.size() - 1);
    const auto json = nlohmann::json::parse(line); // throws if it is not JSON
    CHECK(json["path"] == "/a\"b\\c\nd\x01\u007f\u00c3\u00a9\u00ff");
    CHECK(json["host"] == "x\"}{\"status\":1");
    CHECK(json["status"] == 200);
}

TEST_CASE("a client's X-Request-Id is kept only when it is short and plain") {
    CHECK(acceptable_request_id("4f1c0e8a-9b7d-4c21"));
    CHECK(acceptable_request_id("a"));
    CHECK(acceptable_request_id("Root=1-67891233-abcdef012345678912345678"));
    CHECK(acceptable_request_id(std::string(200, 'x')));
    CHECK_FALSE(acceptable_request_id(""));
    CHECK_FALSE(acceptable_request_id(std::string(201, 'x')));
    CHECK_FALSE(acceptable_request_id("has space"));
    CHECK_FALSE(acceptable_request_id("quote\""));
    CHECK_FALSE(acceptable_request_id("line\nbreak"));
    CHECK_FALSE(acceptable_request_id(std::string("nul\0x", 5)));
    CHECK_FALSE(acceptable_request_id("caf\xc3\xa9"));
}

TEST_CASE("request ids are 32 hex digits and do not repeat") {
    RequestIds ids;
    RequestIds other;
    std::set<std::string> seen;
    std::string id;
    for (int i = 0; i < 1000; ++i) {
        ids.next(id);
        REQUIRE(id.size() == 32);
        CHECK(id.find_first_not_of("0123456789abcdef") == std::string::npos);
        CHECK(seen.insert(id).second);
    }
    other.next(id); // another worker's ids are seeded apart
    CHECK(seen.count(id) == 0);
}

TEST_CASE("the access clock writes RFC 3339 UTC with milliseconds") {
    AccessClock clock;
    const std::string a(clock.now());
    REQUIRE(a.size() == 24);
    CHECK(a[4] == '-');
    CHECK(a[10] == 'T');
    CHECK(a[19] == '.');
    CHECK(a.back() == 'Z');
    const std::string b(clock.now());
    CHECK(b >= a);
}

TEST_CASE("an access buffer keeps lines per app until taken, and drops past its cap") {
    AccessBuffer buffer;
    buffer.append("hello", sample());
    buffer.append("shop", sample());
    buffer.append("hello", sample());
    std::map<std::string, std::string> lines;
    CHECK(buffer.take(lines) == 0);
    CHECK(std::count(lines["hello"].begin(), lines["hello"].end(), '\n') == 2);
    CHECK(std::count(lines["shop"].begin(), lines["shop"].end(), '\n') == 1);
    std::map<std::string, std::string> again;
    buffer.take(again);
    CHECK(again.empty());

    auto big = sample();
    const std::string path(64 * 1024, 'p');
    big.path = path;
    std::uint64_t kept = 0;
    for (int i = 0; i < 300; ++i) { // 300 x 64 KiB > 16 MiB
        buffer.append("hello", big);
    }
    std::map<std::string, std::string> full;
    const auto dropped = buffer.take(full);
    kept = static_cast<std::uint64_t>(std::count(full["hello"].begin(), full["hello"].end(), '\n'));
    CHECK(dropped > 0);
    CHECK(kept + dropped == 300);
    CHECK(full["hello"].size() <= AccessBuffer::k_max_pending);
}

TEST_CASE("the lines of several workers are merged per app into time order") {
    // Worker 0 answered /1 and /4, worker 1 /2 and /3 (and worker 1 alone
    // served "shop"): the file reads /1 /2 /3 /4 whichever flushed first.
    const auto line = [](std::string_view time, std::string_view path) {
        auto record = sample();
        record.time = time;
        record.path = path;
        std::string out;
        append_access_line(out, record);
        return out;
    };
    std::vector<std::map<std::string, std::string>> parts(2);
    parts[0]["hello"] =
        line("2026-11-23T09:00:01.100Z", "/1") + line("2026-11-23T09:00:02.000Z", "/4");
    parts[1]["hello"] =
        line("2026-11-23T09:00:01.200Z", "/2") + line("2026-11-23T09:00:01.999Z", "/3");
    parts[1]["shop"] = line("2026-11-23T09:00:00.500Z", "/s");
    const auto merged = merge_access_lines(parts);
    REQUIRE(merged.size() == 2);
    CHECK(merged.at("hello") ==
          line("2026-11-23T09:00:01.100Z", "/1") + line("2026-11-23T09:00:01.200Z", "/2") +
              line("2026-11-23T09:00:01.999Z", "/3") + line("2026-11-23T09:00:02.000Z", "/4"));
    CHECK(merged.at("shop") == line("2026-11-23T09:00:00.500Z", "/s"));
}

TEST_CASE("access log files: written only where the app's logs directory exists") {
    test::TempDir top; // apps/ inside it: "../x" would land in the test's own folder
    const auto apps = top.path() / "apps";
    std::filesystem::create_directories(apps / "hello" / "logs");
    AccessLogFiles files(apps, 0);
    files.write({{"hello", "{\"a\":1}\n"}, {"gone", "{\"b\":2}\n"}, {"../x", "{\"c\":3}\n"}});
    files.write({{"hello", "{\"a\":2}\n"}});
    CHECK(read(AccessLogFiles::file(apps, "hello")) == "{\"a\":1}\n{\"a\":2}\n");
    CHECK_FALSE(std::filesystem::exists(apps / "gone"));
    CHECK_FALSE(std::filesystem::exists(top.path() / "x"));

    // The app destroyed, then deployed again: the new file is written.
    std::filesystem::remove_all(apps / "hello");
    files.write({{"hello", "{\"a\":3}\n"}});
    CHECK_FALSE(std::filesystem::exists(apps / "hello"));
    std::filesystem::create_directories(apps / "hello" / "logs");
    files.write({{"hello", "{\"a\":4}\n"}});
    CHECK(read(AccessLogFiles::file(apps, "hello")) == "{\"a\":4}\n");
}

TEST_CASE("access log files rotate by size to access.ndjson.1") {
    test::TempDir dir;
    std::filesystem::create_directories(dir.path() / "hello" / "logs");
    const auto file = AccessLogFiles::file(dir.path(), "hello");
    auto rotated = file;
    rotated += ".1";
    AccessLogFiles files(dir.path(), 100);
    const std::string forty(39, 'a');
    files.write({{"hello", forty + "\n"}});
    files.write({{"hello", forty + "\n"}}); // 80 bytes
    CHECK_FALSE(std::filesystem::exists(rotated));
    files.write({{"hello", forty + "\n"}}); // would be 120: rotates first
    CHECK(std::filesystem::file_size(rotated) == 80);
    CHECK(std::filesystem::file_size(file) == 40);
    files.write({{"hello", forty + "\n"}});
    files.write({{"hello", forty + "\n"}}); // rotates again: the previous .1 is gone
    CHECK(std::filesystem::file_size(rotated) == 80);
    CHECK(std::filesystem::file_size(file) == 40);

    // Another writer (a second deploy-proxy during a restart) rotated it:
    // this one follows to the new file instead of writing into the old one.
    AccessLogFiles other(dir.path(), 100);
    other.write({{"hello", "x\n"}});
    std::filesystem::rename(file, rotated);
    files.write({{"hello", "y\n"}});
    CHECK(read(file) == "y\n");
    CHECK(read(rotated) == forty + "\n" + "x\n");
}

TEST_CASE("routes.json names each upstream with \"instances\"") {
    auto table = parse_routes(
        R"({"generation": 1, "routes": [{"host": "web.localhost", "app": "web", "release": "v1",
            "upstreams": ["127.0.0.1:41234", "127.0.0.1:41235"], "instances": ["web.1", "web.2"]},
           {"host": "one.localhost", "app": "one", "release": "v1",
            "upstream": "127.0.0.1:5000", "instances": ["web.1"]},
           {"host": "bare.localhost", "app": "bare", "release": "v1",
            "upstream": "127.0.0.1:5001"}]})",
        "routes.json");
    REQUIRE(table.ok());
    CHECK(table->find("web.localhost")->upstreams[1].name == "web.2");
    CHECK(table->find("one.localhost")->upstreams[0].name == "web.1");
    CHECK(table->find("bare.localhost")->upstreams[0].name.empty());

    for (const char* instances : {R"(["web.1"])", R"(["web.1", "web.2", "web.3"])",
                                  R"(["web.1", "WEB/2"])", R"("web.1")", R"(["web.1", 2])"}) {
        CAPTURE(instances);
        auto bad = parse_routes(
            std::string(R"({"generation": 1, "routes": [{"host": "web.localhost", "app": "web",
                "release": "v1", "upstreams": ["127.0.0.1:41234", "127.0.0.1:41235"],
                "instances": )") +
                instances + "}]}",
            "routes.json");
        REQUIRE_FALSE(bad.ok());
        CHECK(bad.error().message.find("instances") != std::string::npos);
    }
}
