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
