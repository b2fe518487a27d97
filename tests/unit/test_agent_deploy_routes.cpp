// agent/deploy/routes.hpp: the proxy routing table the agent writes.
#include <agent/deploy/routes.hpp>
#include <common/fs.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "temp_dir.hpp"

TEST_CASE("route hosts are APP.localhost plus every target domain once") {
    common::AppConfig config;
    config.targets["production"].domains = {"a.example.com", "b.example.com"};
    config.targets["staging"].domains = {"a.example.com", "s.example.com"};
    auto hosts = agent::route_hosts("web", config);
    CHECK(hosts == std::vector<std::string>{"web.localhost", "a.example.com", "b.example.com",
                                            "s.example.com"});
}

TEST_CASE("routing table JSON has the documented shape") {
    auto text = agent::routing_table_json(7, {{"web.localhost", "web", "v3", "127.0.0.1:41234"}});
    auto json = nlohmann::json::parse(text);
    CHECK(json["generation"] == 7);
    REQUIRE(json["routes"].size() == 1);
    CHECK(json["routes"][0]["host"] == "web.localhost");
    CHECK(json["routes"][0]["app"] == "web");
    CHECK(json["routes"][0]["release"] == "v3");
    CHECK(json["routes"][0]["upstream"] == "127.0.0.1:41234");
}

TEST_CASE("generation is read from a routes file or a bare applied number") {
    test::TempDir dir;
    auto file = dir.path() / "applied";
    CHECK(agent::read_generation(file) == 0); // missing
    REQUIRE(common::atomic_write_file(file, "12\n").ok());
    CHECK(agent::read_generation(file) == 12);
    REQUIRE(common::atomic_write_file(file, agent::routing_table_json(5, {})).ok());
    CHECK(agent::read_generation(file) == 5);
    REQUIRE(common::atomic_write_file(file, "garbage").ok());
    CHECK(agent::read_generation(file) == 0);
}

TEST_CASE("a static route is written with its root and no upstream") {
    agent::Route route{"site.localhost", "site", "v2", ""};
    route.static_root = "/data/apps/site/releases/v2/dist";
    route.spa = true;
    auto json = nlohmann::json::parse(agent::routing_table_json(3, {route}));
    REQUIRE(json["routes"].size() == 1);
    const auto& written = json["routes"][0];
    CHECK(written["host"] == "site.localhost");
    CHECK_FALSE(written.contains("upstream"));
    CHECK(written["static"]["root"] == "/data/apps/site/releases/v2/dist");
    CHECK(written["static"]["spa"] == true);
}

TEST_CASE("a sleeping app's route (idle_stop) has no upstream, and the last failure") {
    agent::Route asleep{"a.localhost", "a", "v1", ""};
    asleep.wake_timeout_ms = 40000;
    agent::Route failed = asleep;
    failed.host = "b.localhost";
    failed.wake_error = "health check failed";
    auto json = nlohmann::json::parse(agent::routing_table_json(4, {asleep, failed}));
    REQUIRE(json["routes"].size() == 2);
    CHECK(json["routes"][0]["sleeping"] == nlohmann::json{{"timeout_ms", 40000}});
    CHECK_FALSE(json["routes"][0].contains("upstream"));
    CHECK(json["routes"][1]["sleeping"]["error"] == "health check failed");
}

TEST_CASE("several web instances are written as upstreams, web=0 as a scaled route") {
    agent::Route one{"web.localhost", "web", "v3", "127.0.0.1:41234"};
    agent::Route two = one;
    two.host = "two.localhost";
    two.upstreams = {"127.0.0.1:41234", "127.0.0.1:41235"};
    agent::Route zero{"zero.localhost", "zero", "v1", ""};
    zero.stopped = true;
    zero.scaled_to_zero = true;
    auto json = nlohmann::json::parse(agent::routing_table_json(4, {one, two, zero}));
    REQUIRE(json["routes"].size() == 3);
    CHECK(json["routes"][0]["upstream"] == "127.0.0.1:41234");
    CHECK_FALSE(json["routes"][0].contains("upstreams"));
    CHECK(json["routes"][1]["upstreams"] ==
          nlohmann::json::array({"127.0.0.1:41234", "127.0.0.1:41235"}));
    CHECK_FALSE(json["routes"][1].contains("upstream"));
    CHECK(json["routes"][2]["stopped"] == "scaled");
    CHECK_FALSE(json["routes"][2].contains("upstream"));
    CHECK_FALSE(json["routes"][2].contains("limits"));
    // An app route carries deploy.toml [proxy] as its limits.
    CHECK(json["routes"][0]["limits"] == nlohmann::json{{"max_body", 100ull * 1024 * 1024},
                                                        {"connect_timeout_ms", 5000},
                                                        {"read_timeout_ms", 60000},
                                                        {"websocket_idle_ms", 3600000}});
}

namespace {

// A publisher over real files whose write step and proxy are scripted.
struct PublishFixture {
    test::TempDir dir;
    std::filesystem::path routes = dir.path() / "routes.json";
    std::filesystem::path applied = dir.path() / "applied";
    int write_failures = 0; // the next N writes fail
    int writes = 0;
    bool proxy_answers = true; // the fake proxy applies the table when signalled
    int signals = 0;

    agent::RoutePublisher make() {
        agent::PublishLimits limits;
        limits.write_retry = std::chrono::milliseconds(1);
        limits.ack_timeout = std::chrono::milliseconds(200);
        limits.resignal = std::chrono::milliseconds(50);
        limits.poll = std::chrono::milliseconds(5);
        return agent::RoutePublisher(
            routes, applied,
            {[this](const std::filesystem::path& file, std::string_view text) -> common::Status {
                 ++writes;
                 if (write_failures > 0) {
                     --write_failures;
                     return common::make_error(common::ErrorKind::io,
                                               "cannot fsync " + file.string() +
                                                   ".tmp-1-2: Input/output error");
                 }
                 return common::atomic_write_file(file, text);
             },
             [this] {
                 ++signals;
                 if (proxy_answers) // what deploy-proxy does: applied = the file's generation
                     REQUIRE(common::atomic_write_file(
                                 applied, std::to_string(agent::read_generation(routes)) + "\n")
                                 .ok());
             },
             [] { return true; }, "proxy.log"},
            limits);
    }
};

} // namespace

TEST_CASE("a routing table is published once the proxy reports its generation") {
    PublishFixture f;
    auto publisher = f.make();
    REQUIRE(publisher.publish({{"web.localhost", "web", "v1", "127.0.0.1:4000"}}).ok());
    CHECK(publisher.generation() == 1);
    CHECK(agent::read_generation(f.routes) == 1);
    CHECK(agent::read_generation(f.applied) == 1);
    REQUIRE(publisher.publish({}).ok());
    CHECK(agent::read_generation(f.applied) == 2);
}

TEST_CASE("a failed routing-table write is tried again, each time as a new generation") {
    PublishFixture f;
    f.write_failures = 2;
    auto publisher = f.make();
    REQUIRE(publisher.publish({}).ok());
    CHECK(f.writes == 3);
    CHECK(publisher.generation() == 3); // a failed attempt may have reached the proxy
    CHECK(agent::read_generation(f.applied) == 3);
}

TEST_CASE("a routing table that cannot be written is an error naming the step and the OS error") {
    PublishFixture f;
    f.write_failures = 100;
    auto publisher = f.make();
    auto published = publisher.publish({});
    REQUIRE_FALSE(published.ok());
    CHECK(f.writes == agent::PublishLimits{}.write_attempts);
    CHECK(published.error().kind == common::ErrorKind::io); // not there at all
    CHECK(published.error().message.find("cannot write the routing table (5 attempts)") == 0);
    CHECK(published.error().message.find("cannot fsync") != std::string::npos);
    CHECK(published.error().message.find("Input/output error") != std::string::npos);
    CHECK(f.signals == 0); // the proxy is not told about a table that is not there
}

TEST_CASE("a routing table the proxy does not acknowledge is not published") {
    PublishFixture f;
    f.proxy_answers = false;
    auto publisher = f.make();
    auto published = publisher.publish({});
    REQUIRE_FALSE(published.ok());
    CHECK(published.error().kind == common::ErrorKind::timeout); // written, not confirmed
    CHECK(published.error().message.find("deploy-proxy did not acknowledge routing generation 1") ==
          0);
    CHECK(published.error().message.find("proxy.log") != std::string::npos);
    CHECK(f.signals >= 2); // signalled again while waiting
    // A proxy that applied an older table does not count either.
    REQUIRE(common::atomic_write_file(f.applied, "1\n").ok());
    published = publisher.publish({});
    REQUIRE_FALSE(published.ok());
    CHECK(published.error().message.find("says 1") != std::string::npos);
    // Once it answers again, the next table goes through.
    f.proxy_answers = true;
    CHECK(publisher.publish({}).ok());
}

TEST_CASE("the first publish continues after the generations on disk") {
    PublishFixture f;
    REQUIRE(common::atomic_write_file(f.routes, agent::routing_table_json(7, {})).ok());
    REQUIRE(common::atomic_write_file(f.applied, "9\n").ok());
    auto publisher = f.make();
    REQUIRE(publisher.publish({}).ok());
    CHECK(publisher.generation() == 10); // above what the proxy applied: no stale acknowledgement
}

TEST_CASE("the first publish fails when the current generation cannot be read") {
    PublishFixture f;
    std::filesystem::create_directories(f.routes); // a directory: read errors, not missing
    auto publisher = f.make();
    auto published = publisher.publish({});
    REQUIRE_FALSE(published.ok());
    CHECK(published.error().message.find("cannot read the current routing generation") == 0);
    CHECK(f.writes == 0);
}
