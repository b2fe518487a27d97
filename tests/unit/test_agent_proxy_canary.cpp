// Canary releases in deploy-proxy (agent/proxy/routes.cpp, stats.cpp): routes.json
// "canary", the side of a request by cookie or client hash, per-release figures.
#include <agent/deploy/routes.hpp>
#include <agent/proxy/routes.hpp>
#include <agent/proxy/stats.hpp>

#include <doctest/doctest.h>

#include <string>

using namespace agent::proxy;

namespace {
constexpr std::string_view k_canary_table = R"({"generation": 3, "routes": [
    {"host": "hello.localhost", "app": "hello", "release": "v4", "upstream": "127.0.0.1:41234",
     "limits": {"max_body": 1000},
     "canary": {"release": "v5", "percent": 20, "upstreams": ["127.0.0.1:41240", "127.0.0.1:41241"],
                "instances": ["web.1", "web.2"]}}]})";
}

TEST_CASE("canary: routes.json \"canary\" gives the route its canary side") {
    auto table = parse_routes(k_canary_table, "routes.json");
    REQUIRE(table.ok());
    const Route* route = table->find("hello.localhost");
    REQUIRE(route != nullptr);
    CHECK(route->release == "v4");
    REQUIRE(route->canary != nullptr);
    CHECK(route->canary_percent == 20);
    const Route& side = *route->canary;
    CHECK(side.release == "v5");
    CHECK(side.app == "hello");
    CHECK(side.max_body == 1000); // the route's limits
    REQUIRE(side.upstreams.size() == 2);
    CHECK(side.upstream == "127.0.0.1:41240");
    CHECK(side.upstreams[1].name == "web.2");
    CHECK(side.balance != nullptr);
    CHECK(side.canary == nullptr);
}

TEST_CASE("canary: a route without \"canary\" has none (the hot path unchanged)") {
    auto table = parse_routes(R"({"generation": 1, "routes": [{"host": "a.localhost", "app": "a",
        "release": "v1", "upstream": "127.0.0.1:4000"}]})",
                              "routes.json");
    REQUIRE(table.ok());
    CHECK(table->find("a.localhost")->canary == nullptr);
}

TEST_CASE("canary: malformed \"canary\" objects are refused") {
    for (std::string canary :
         {R"("v5")", R"({"release": "v5", "percent": 101, "upstreams": ["127.0.0.1:1"]})",
          R"({"release": "v5", "percent": 10})",
          R"({"release": "V 5", "percent": 10, "upstreams": ["127.0.0.1:1"]})",
          R"({"release": "v5", "percent": "10", "upstreams": ["127.0.0.1:1"]})"}) {
        CAPTURE(canary);
        auto table = parse_routes(R"({"generation": 1, "routes": [{"host": "a.localhost",
            "app": "a", "release": "v1", "upstream": "127.0.0.1:4000", "canary": )" +
                                      canary + "}]}",
                                  "routes.json");
        CHECK_FALSE(table.ok());
    }
    auto on_static = parse_routes(R"({"generation": 1, "routes": [{"host": "a.localhost",
        "app": "a", "release": "v1", "static": {"root": "/srv"},
        "canary": {"release": "v2", "percent": 5, "upstreams": ["127.0.0.1:1"]}}]})",
                                  "routes.json");
    CHECK_FALSE(on_static.ok());
}

TEST_CASE("canary: the cookie keeps a client on its side, for its release only") {
    CHECK(canary_cookie_side("deploy_canary=v5:c", "v5") == true);
    CHECK(canary_cookie_side("deploy_canary=v5:p", "v5") == false);
    CHECK(canary_cookie_side("a=1; deploy_canary=v5:c; b=2", "v5") == true);
    CHECK(canary_cookie_side("a=1;deploy_canary=v5:p", "v5") == false);
    CHECK_FALSE(canary_cookie_side("deploy_canary=v4:c", "v5").has_value());
    CHECK_FALSE(canary_cookie_side("deploy_canary=v55:c", "v5").has_value());
    CHECK_FALSE(canary_cookie_side("deploy_canary=v5:x", "v5").has_value());
    CHECK_FALSE(canary_cookie_side("xdeploy_canary=v5:c", "v5").has_value());
    CHECK_FALSE(canary_cookie_side("", "v5").has_value());
}

TEST_CASE("canary: the client hash gives about the share asked, stably") {
    for (unsigned percent : {0u, 10u, 20u, 50u, 100u}) {
        int canary = 0;
        for (int i = 0; i < 10000; ++i)
            canary += canary_hash_side("client-" + std::to_string(i), percent);
        CAPTURE(percent);
        CHECK(canary >= static_cast<int>(percent) * 100 - 200);
        CHECK(canary <= static_cast<int>(percent) * 100 + 200);
    }
    CHECK(canary_hash_side("10.0.0.7", 20) == canary_hash_side("10.0.0.7", 20));
    // A bigger share keeps the clients that had the canary on it.
    for (int i = 0; i < 1000; ++i) {
        const std::string client = "192.168.0." + std::to_string(i);
        if (canary_hash_side(client, 10))
            CHECK(canary_hash_side(client, 50));
    }
}

TEST_CASE("canary: per-release figures, 5xx and p95 from the histogram") {
    Stats stats;
    for (int i = 0; i < 90; ++i)
        stats.release_ended("hello v5", "GET", 200, 0.004); // the first bucket (5 ms)
    for (int i = 0; i < 10; ++i)
        stats.release_ended("hello v5", "GET", 503, 0.2); // 0.1 .. 0.25 s
    std::map<std::string, AppStats> releases;
    stats.add_releases_to(releases);
    REQUIRE(releases.count("hello v5"));
    const AppStats& v5 = releases["hello v5"];
    CHECK(v5.count == 100);
    CHECK(stat_5xx(v5) == 10);
    // rank 95 of 100: half-way through the 10 in (0.1, 0.25]
    CHECK(stat_quantile(v5, 0.95) == doctest::Approx(0.175));
    CHECK(stat_quantile(AppStats{}, 0.95) == 0);
    std::map<std::string, AppStats> apps;
    std::int64_t connections = 0;
    stats.add_to(apps, connections);
    CHECK(apps.empty()); // counted per release only: the app's own figures come from request_ended
}

TEST_CASE("canary: the agent writes the route's canary side into routes.json") {
    agent::Route route{"hello.localhost", "hello", "v4", "127.0.0.1:41234"};
    route.canary_release = "v5";
    route.canary_percent = 30;
    route.canary_upstreams = {"127.0.0.1:41240"};
    route.canary_instances = {"web.1"};
    auto text = agent::routing_table_json(9, {route});
    auto table = parse_routes(text, "routes.json");
    REQUIRE(table.ok());
    const Route* parsed = table->find("hello.localhost");
    REQUIRE(parsed != nullptr);
    REQUIRE(parsed->canary != nullptr);
    CHECK(parsed->canary->release == "v5");
    CHECK(parsed->canary_percent == 30);
    CHECK(parsed->canary->upstreams.front().name == "web.1");
}
