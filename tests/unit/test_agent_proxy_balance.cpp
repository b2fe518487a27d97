// deploy-proxy: routes with several upstreams ("upstreams" in routes.json),
// round robin over them, passive health and the order of failover.
#include <agent/proxy/routes.hpp>

#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace agent::proxy;

namespace {

std::string table_with(std::string_view fields) {
    return R"({"generation": 4, "routes": [{"host": "web.localhost", "app": "web",
        "release": "v2", )" +
           std::string(fields) + "}]}";
}

std::string refused(std::string_view fields) {
    auto table = parse_routes(table_with(fields), "/data/proxy/routes.json");
    REQUIRE_FALSE(table.ok());
    CHECK(table.error().kind == common::ErrorKind::config);
    CHECK(table.error().message.rfind("/data/proxy/routes.json: ", 0) == 0);
    return table.error().message;
}

std::string upstream_list(std::size_t count, std::uint16_t first_port = 41000) {
    std::string list = "[";
    for (std::size_t i = 0; i < count; ++i) {
        list += (i ? ", \"127.0.0.1:" : "\"127.0.0.1:") + std::to_string(first_port + i) + "\"";
    }
    return list + "]";
}

} // namespace

TEST_CASE("parse_routes reads \"upstreams\"") {
    auto table = parse_routes(
        table_with(R"("upstreams": ["127.0.0.1:41234", "[::1]:41235", "127.0.0.1:41236"])"),
        "routes.json");
    REQUIRE(table.ok());
    const Route* web = table->find("web.localhost");
    REQUIRE(web != nullptr);
    REQUIRE(web->upstreams.size() == 3);
    CHECK(web->upstreams[0].key == "127.0.0.1:41234");
    CHECK(web->upstreams[0].address == "127.0.0.1");
    CHECK(web->upstreams[0].port == 41234);
    CHECK(web->upstreams[1].key == "[::1]:41235");
    CHECK(web->upstreams[1].address == "::1");
    CHECK(web->upstreams[1].port == 41235);
    CHECK(web->upstreams[2].port == 41236);
    // The first one stays available in the one-upstream fields.
    CHECK(web->upstream == "127.0.0.1:41234");
    CHECK(web->upstream_address == "127.0.0.1");
    CHECK(web->upstream_port == 41234);
    CHECK(web->balance != nullptr);
    CHECK_FALSE(web->is_static());
    CHECK_FALSE(web->stopped);
}

TEST_CASE("\"upstream\" and a one-entry \"upstreams\" are the same route") {
    for (auto fields : {R"("upstream": "127.0.0.1:5000")", R"("upstreams": ["127.0.0.1:5000"])"}) {
        CAPTURE(fields);
        auto table = parse_routes(table_with(fields), "routes.json");
        REQUIRE(table.ok());
        const Route* web = table->find("web.localhost");
        REQUIRE(web != nullptr);
        REQUIRE(web->upstreams.size() == 1);
        CHECK(web->upstreams[0].key == "127.0.0.1:5000");
        CHECK(web->upstream == "127.0.0.1:5000");
        CHECK(web->upstream_port == 5000);
        CHECK(web->balance == nullptr); // nothing to balance
        CHECK(web->pick() == 0);
        CHECK_FALSE(web->next_untried(0, 1).has_value());
    }
}

TEST_CASE("parse_routes accepts 64 upstreams") {
    auto table = parse_routes(table_with("\"upstreams\": " + upstream_list(64)), "routes.json");
    REQUIRE(table.ok());
    CHECK(table->find("web.localhost")->upstreams.size() == 64);
}

TEST_CASE("parse_routes refuses bad \"upstreams\"") {
    SUBCASE("empty list") {
        CHECK(refused(R"("upstreams": [])")
                  .find("routes[0].upstreams must be an array of 1 to 64 \"IP:PORT\" strings") !=
              std::string::npos);
    }
    SUBCASE("not a list") {
        CHECK(refused(R"("upstreams": "127.0.0.1:80")")
                  .find("routes[0].upstreams must be an array") != std::string::npos);
    }
    SUBCASE("more than 64") {
        CHECK(refused("\"upstreams\": " + upstream_list(65))
                  .find("routes[0].upstreams must be an array of 1 to 64") != std::string::npos);
    }
    SUBCASE("a duplicate") {
        CHECK(refused(R"("upstreams": ["127.0.0.1:80", "127.0.0.1:81", "127.0.0.1:80"])")
                  .find("routes[0].upstreams has \"127.0.0.1:80\" twice") != std::string::npos);
    }
    SUBCASE("a name, not an IP") {
        CHECK(refused(R"("upstreams": ["127.0.0.1:80", "localhost:81"])")
                  .find("routes[0].upstreams[1] must be IP:PORT, got \"localhost:81\"") !=
              std::string::npos);
    }
    SUBCASE("port 0") {
        CHECK(refused(R"("upstreams": ["127.0.0.1:0"])")
                  .find("routes[0].upstreams[0] must be IP:PORT") != std::string::npos);
    }
    SUBCASE("no port") {
        CHECK(refused(R"("upstreams": ["127.0.0.1"])").find("upstreams[0] must be IP:PORT") !=
              std::string::npos);
    }
    SUBCASE("not a string") {
        CHECK(refused(R"("upstreams": ["127.0.0.1:80", 81])")
                  .find("routes[0].upstreams[1] must be a non-empty string") != std::string::npos);
    }
    SUBCASE("an empty string") {
        CHECK(refused(R"("upstreams": [""])").find("routes[0].upstreams[0] must be a non-empty") !=
              std::string::npos);
    }
    SUBCASE("both upstream and upstreams") {
        auto message = refused(R"("upstream": "127.0.0.1:80", "upstreams": ["127.0.0.1:81"])");
        CHECK(message.find("routes[0] must have exactly one of \"upstream\"") != std::string::npos);
        CHECK(message.find("\"upstreams\"") != std::string::npos);
    }
    SUBCASE("upstreams and static") {
        CHECK(refused(R"("upstreams": ["127.0.0.1:81"], "static": {"root": "/srv"})")
                  .find("exactly one of") != std::string::npos);
    }
    SUBCASE("stopped with upstreams") {
        CHECK(refused(R"("stopped": true, "upstreams": ["127.0.0.1:81"])")
                  .find("routes[0].stopped must be true or \"scaled\", without") !=
              std::string::npos);
    }
    SUBCASE("one bad route refuses the whole table") {
        auto table = parse_routes(R"({"generation": 5, "routes": [
            {"host": "a.localhost", "app": "a", "release": "v1", "upstreams": ["127.0.0.1:80"]},
            {"host": "b.localhost", "app": "b", "release": "v1", "upstreams": []}]})",
                                  "routes.json");
        REQUIRE_FALSE(table.ok());
        CHECK(table.error().message.find("routes[1].upstreams") != std::string::npos);
    }
}

TEST_CASE("round robin visits every upstream in turn") {
    auto table = parse_routes(table_with("\"upstreams\": " + upstream_list(3)), "routes.json");
    REQUIRE(table.ok());
    const Route& web = *table->find("web.localhost");
    std::vector<std::size_t> picks;
    for (int i = 0; i < 6; ++i) {
        picks.push_back(web.pick());
    }
    CHECK(picks == std::vector<std::size_t>{0, 1, 2, 0, 1, 2});
}

TEST_CASE("round robin is shared by threads and stays even") {
    auto table = parse_routes(table_with("\"upstreams\": " + upstream_list(4)), "routes.json");
    REQUIRE(table.ok());
    const Route& web = *table->find("web.localhost");
    std::vector<std::map<std::size_t, int>> counts(4);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 1000; ++i) {
                ++counts[t][web.pick()];
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    std::map<std::size_t, int> total;
    for (const auto& c : counts) {
        for (auto [index, n] : c) {
            total[index] += n;
        }
    }
    REQUIRE(total.size() == 4);
    for (auto [index, n] : total) {
        CHECK(n == 1000); // 4000 picks from one shared counter
    }
}

TEST_CASE("an upstream that failed a connect is skipped for a while") {
    auto table = parse_routes(table_with("\"upstreams\": " + upstream_list(3)), "routes.json");
    REQUIRE(table.ok());
    const Route& web = *table->find("web.localhost");
    const auto t0 = Route::Clock::now();
    web.mark_failed(1, t0);
    CHECK(web.failing(1, t0));
    CHECK_FALSE(web.failing(0, t0));
    std::multiset<std::size_t> picks;
    for (int i = 0; i < 6; ++i) {
        picks.insert(web.pick(t0 + std::chrono::milliseconds(500)));
    }
    CHECK(picks.count(1) == 0);
    CHECK(picks.count(0) == 3);
    CHECK(picks.count(2) == 3);
    // After k_fail_timeout it is back in the rotation.
    const auto later = t0 + k_fail_timeout + std::chrono::milliseconds(1);
    CHECK_FALSE(web.failing(1, later));
    std::set<std::size_t> back;
    for (int i = 0; i < 3; ++i) {
        back.insert(web.pick(later));
    }
    CHECK(back == std::set<std::size_t>{0, 1, 2});
}

TEST_CASE("when all upstreams are failing, round robin goes on over all of them") {
    auto table = parse_routes(table_with("\"upstreams\": " + upstream_list(2)), "routes.json");
    REQUIRE(table.ok());
    const Route& web = *table->find("web.localhost");
    const auto t0 = Route::Clock::now();
    web.mark_failed(0, t0);
    web.mark_failed(1, t0);
    std::set<std::size_t> picks{web.pick(t0), web.pick(t0)};
    CHECK(picks == std::set<std::size_t>{0, 1});
}

TEST_CASE("failover tries each other upstream once, healthy ones first") {
    auto table = parse_routes(table_with("\"upstreams\": " + upstream_list(4)), "routes.json");
    REQUIRE(table.ok());
    const Route& web = *table->find("web.localhost");
    const auto now = Route::Clock::now();
    SUBCASE("in round-robin order after the failed one") {
        std::uint64_t tried = 1u << 2;
        std::vector<std::size_t> order;
        std::size_t current = 2;
        while (auto next = web.next_untried(current, tried, now)) {
            order.push_back(*next);
            tried |= std::uint64_t{1} << *next;
            current = *next;
        }
        CHECK(order == std::vector<std::size_t>{3, 0, 1});
    }
    SUBCASE("a failing upstream comes last") {
        web.mark_failed(3, now);
        std::uint64_t tried = 1u << 2;
        std::vector<std::size_t> order;
        std::size_t current = 2;
        while (auto next = web.next_untried(current, tried, now)) {
            order.push_back(*next);
            tried |= std::uint64_t{1} << *next;
            current = *next;
        }
        CHECK(order == std::vector<std::size_t>{0, 1, 3});
    }
    SUBCASE("the 64th upstream is reachable") {
        auto big = parse_routes(table_with("\"upstreams\": " + upstream_list(64)), "routes.json");
        REQUIRE(big.ok());
        const Route& route = *big->find("web.localhost");
        const std::uint64_t all_but_last = ~(std::uint64_t{1} << 63);
        CHECK(route.next_untried(0, all_but_last, now) == std::optional<std::size_t>(63));
        CHECK_FALSE(route.next_untried(63, ~std::uint64_t{0}, now).has_value());
    }
}

TEST_CASE("copies of a route share its round robin") {
    auto table = parse_routes(table_with("\"upstreams\": " + upstream_list(2)), "routes.json");
    REQUIRE(table.ok());
    const Route copy = *table->find("web.localhost");
    CHECK(table->find("web.localhost")->pick() == 0);
    CHECK(copy.pick() == 1);
}
