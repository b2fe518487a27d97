#include <agent/proxy/stats.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using agent::proxy::AppStats;
using agent::proxy::Stats;

TEST_CASE("proxy stats count requests by method and status class, durations and bytes") {
    Stats stats;
    stats.connection(+1);
    stats.request_started("hello");
    stats.request_ended("hello", "GET", 200, 0.003, 0, 120);
    stats.request_started("hello");
    stats.request_ended("hello", "POST", 502, 0.2, 4096, 10);
    stats.request_started("hello");
    stats.request_ended("hello", "BREW", 418, 20.0, 0, 0); // other method, past every bucket
    stats.request_started("hello");                         // still under way
    stats.connect_error("hello");
    stats.retry("hello");
    stats.websocket("chat", +1);

    std::map<std::string, AppStats> apps;
    std::int64_t connections = 0;
    stats.add_to(apps, connections);
    CHECK(connections == 1);
    REQUIRE(apps.count("hello") == 1);
    const auto& hello = apps.at("hello");
    CHECK(hello.requests[0][1] == 1); // GET 2xx
    CHECK(hello.requests[2][4] == 1); // POST 5xx
    CHECK(hello.requests[7][3] == 1); // other 4xx
    CHECK(hello.count == 3);
    CHECK(hello.buckets[0] == 1);  // <= 5 ms
    CHECK(hello.buckets[5] == 2);  // <= 250 ms (cumulative)
    CHECK(hello.buckets[10] == 2); // <= 10 s: the 20 s one is only in +Inf (count)
    CHECK(hello.bytes_in == 4096);
    CHECK(hello.bytes_out == 130);
    CHECK(hello.in_flight == 1);
    CHECK(hello.connect_errors == 1);
    CHECK(hello.retries == 1);
    CHECK(apps.at("chat").websockets == 1);

    SUBCASE("the JSON the agent reads gives the same figures back") {
        auto json = agent::proxy::stats_json("42-7", apps, connections);
        CHECK(json["instance"] == "42-7");
        CHECK(json["apps"]["hello"]["requests"]["GET 2xx"] == 1);
        auto back = agent::proxy::apps_from_json(json["apps"]);
        REQUIRE(back.count("hello") == 1);
        CHECK(back.at("hello").requests == hello.requests);
        CHECK(back.at("hello").buckets == hello.buckets);
        CHECK(back.at("hello").seconds == doctest::Approx(hello.seconds));
        CHECK(back.at("hello").in_flight == 1);
        CHECK(back.at("chat").websockets == 1);
    }
    SUBCASE("malformed fields read as nothing") {
        auto back = agent::proxy::apps_from_json(nlohmann::json::parse(
            R"({"x": {"requests": {"GET 9xx": 4, "nonsense": 1, "PUT 2xx": "many"},
                      "buckets": [1, 2], "count": -3, "bytes_in": "a"}, "y": 5})"));
        REQUIRE(back.count("x") == 1);
        CHECK(back.count("y") == 0);
        CHECK(back.at("x").count == 0);
        CHECK(back.at("x").bytes_in == 0);
        CHECK(back.at("x").buckets[0] == 0);
        for (const auto& method : back.at("x").requests)
            for (auto n : method)
                CHECK(n == 0);
    }
}
