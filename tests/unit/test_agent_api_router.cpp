#include <agent/api/http.hpp>
#include <agent/api/listen.hpp>
#include <agent/api/router.hpp>

#include <doctest/doctest.h>

using namespace agent::api;

namespace {

Handler named(std::string name) {
    return [name](const Request&) {
        Response response;
        response.body = name;
        return response;
    };
}

Router sample_router() {
    Router router;
    router.add("GET", "/v1/apps", named("apps"));
    router.add("GET", "/v1/apps/{app}", named("status"));
    router.add("GET", "/v1/apps/{app}/releases/{id}", named("release"));
    router.add("DELETE", "/v1/apps/{app}/releases/{id}", named("remove"));
    router.add("POST", "/v1/blobs/missing", named("missing"));
    router.add("PUT", "/v1/blobs/{digest}", named("put"), BodyKind::file);
    return router;
}

std::string dispatch(const Router& router, const std::string& method, const std::string& path) {
    const auto match = router.match(method, path);
    if (match.result == MatchResult::not_found)
        return "404";
    if (match.result == MatchResult::method_not_allowed)
        return "405";
    return match.route->handler(Request{}).body;
}

} // namespace

TEST_CASE("Router dispatches by method and path") {
    const auto router = sample_router();
    CHECK(dispatch(router, "GET", "/v1/apps") == "apps");
    CHECK(dispatch(router, "GET", "/v1/apps/hello") == "status");
    CHECK(dispatch(router, "GET", "/v1/apps/hello/releases/v2") == "release");
    CHECK(dispatch(router, "DELETE", "/v1/apps/hello/releases/v2") == "remove");
    CHECK(dispatch(router, "POST", "/v1/blobs/missing") == "missing");
    CHECK(dispatch(router, "PUT", "/v1/blobs/missing") == "put");

    SUBCASE("unknown paths are 404") {
        CHECK(dispatch(router, "GET", "/v1/nope") == "404");
        CHECK(dispatch(router, "GET", "/v1/apps/hello/releases") == "404");
        CHECK(dispatch(router, "GET", "/v1/apps/") == "404");
        CHECK(dispatch(router, "GET", "/v1/apps//releases/v1") == "404");
        CHECK(dispatch(router, "GET", "/v1/apps/hello/") == "404");
        CHECK(dispatch(router, "GET", "") == "404");
        CHECK(dispatch(router, "GET", "v1/apps") == "404");
    }
    SUBCASE("known paths with the wrong method are 405") {
        CHECK(dispatch(router, "POST", "/v1/apps") == "405");
        CHECK(dispatch(router, "PUT", "/v1/apps/hello/releases/v2") == "405");
        CHECK(dispatch(router, "GET", "/v1/blobs/abc") == "405");
    }
}

TEST_CASE("Router captures path parameters, percent-decoded per segment") {
    const auto router = sample_router();
    auto match = router.match("GET", "/v1/apps/hello/releases/v12");
    REQUIRE(match.result == MatchResult::found);
    CHECK(match.params.at("app") == "hello");
    CHECK(match.params.at("id") == "v12");
    CHECK(match.route->body == BodyKind::json);

    match = router.match("PUT", "/v1/blobs/..%2F..%2Fetc");
    REQUIRE(match.result == MatchResult::found);
    CHECK(match.params.at("digest") == "../../etc");
    CHECK(match.route->body == BodyKind::file);

    CHECK(router.match("GET", "/v1/apps/bad%zz").result == MatchResult::not_found);
}

TEST_CASE("split_path keeps empty segments") {
    CHECK(split_path("/v1/apps") == std::vector<std::string>{"v1", "apps"});
    CHECK(split_path("/v1//x/") == std::vector<std::string>{"v1", "", "x", ""});
    CHECK(split_path("relative").empty());
}

TEST_CASE("parse_query decodes pairs and flags") {
    const auto query = parse_query("follow=1&release=v3&name=a%20b&empty=&bare&&bad=%g");
    CHECK(query.at("follow") == "1");
    CHECK(query.at("release") == "v3");
    CHECK(query.at("name") == "a b");
    CHECK(query.at("empty").empty());
    CHECK(query.count("bad") == 0);
    CHECK(flag_set(query, "follow"));
    CHECK(flag_set(query, "bare"));
    CHECK_FALSE(flag_set(query, "release"));
    CHECK_FALSE(flag_set(query, "missing"));
    CHECK(parse_query("").empty());
}

TEST_CASE("percent_decode") {
    std::string out;
    CHECK(percent_decode("a%2Fb+c", out));
    CHECK(out == "a/b+c");
    CHECK_FALSE(percent_decode("trailing%2", out));
    CHECK_FALSE(percent_decode("%", out));
    CHECK_FALSE(percent_decode("%xy", out));
}

TEST_CASE("parse_listen_address") {
    SUBCASE("valid") {
        auto address = parse_listen_address("127.0.0.1:7070");
        REQUIRE(address.ok());
        CHECK(address->host == "127.0.0.1");
        CHECK(address->port == 7070);
        address = parse_listen_address("[::1]:0");
        REQUIRE(address.ok());
        CHECK(address->host == "::1");
        CHECK(address->port == 0);
        address = parse_listen_address("localhost:80");
        REQUIRE(address.ok());
        CHECK(address->host == "127.0.0.1");
    }
    SUBCASE("invalid") {
        for (const char* text : {"7070", "127.0.0.1", "127.0.0.1:", "127.0.0.1:x", ":7070",
                                 "127.0.0.1:70000", "example.com:80", "127.0.0.1:80x", "::1:7070"}) {
            CAPTURE(text);
            auto address = parse_listen_address(text);
            REQUIRE_FALSE(address.ok());
            CHECK(address.error().kind == common::ErrorKind::usage);
            CHECK(address.error().message.find("HOST:PORT") != std::string::npos);
        }
    }
}
