#include <agent/api/errors.hpp>
#include <agent/api/json.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using namespace agent::api;
using common::ErrorKind;
using nlohmann::json;

TEST_CASE("error kinds map to the statuses of docs/api.md") {
    CHECK(http_status(ErrorKind::config) == 400);
    CHECK(http_status(ErrorKind::bad_request) == 400);
    CHECK(http_status(ErrorKind::usage) == 400);
    CHECK(http_status(ErrorKind::not_found) == 404);
    CHECK(http_status(ErrorKind::refused) == 409);
    CHECK(http_status(ErrorKind::internal) == 500);
    CHECK(http_status(ErrorKind::io) == 500);
    CHECK(http_status(ErrorKind::disk_full) == 507);
}

TEST_CASE("error_response has the {error:{code,message}} shape") {
    const auto response =
        error_response(common::make_error(ErrorKind::config, "deploy.toml:3:1: unknown key"));
    CHECK(response.status == 400);
    CHECK(response.content_type == "application/json");
    const auto body = json::parse(response.body);
    CHECK(body["error"]["code"] == "config");
    CHECK(body["error"]["message"] == "deploy.toml:3:1: unknown key");

    SUBCASE("refused") {
        const auto refused = error_response(common::make_error(ErrorKind::refused, "no"));
        CHECK(refused.status == 409);
        CHECK(json::parse(refused.body)["error"]["code"] == "refused");
    }
    SUBCASE("a usage error (an invalid variable name) is a bad request, not a code of its own") {
        const auto usage =
            error_response(common::make_error(ErrorKind::usage, "the value of X contains NUL"));
        CHECK(usage.status == 400);
        CHECK(json::parse(usage.body)["error"]["code"] == "bad_request");
    }
    SUBCASE("explicit code") {
        const auto too_large = error_response(413, "too_large", "big");
        CHECK(too_large.status == 413);
        CHECK(json::parse(too_large.body)["error"]["code"] == "too_large");
    }
    SUBCASE("invalid UTF-8 in a message does not throw") {
        const auto odd =
            error_response(common::make_error(ErrorKind::bad_request, "bad \xff byte"));
        CHECK(json::parse(odd.body)["error"]["code"] == "bad_request");
    }
}

TEST_CASE("missing_blobs_response lists the missing digests") {
    const auto response = missing_blobs_response({"aa", "bb"});
    CHECK(response.status == 409);
    const auto body = json::parse(response.body);
    CHECK(body["error"]["code"] == "missing_blobs");
    CHECK(body["missing"] == json::array({"aa", "bb"}));
}

TEST_CASE("release and status JSON follow docs/api.md") {
    agent::ReleaseInfo release;
    release.id = "v3";
    release.app = "hello";
    release.state = common::State::production;
    release.created_at = "2026-11-23T09:00:00.000Z";
    release.updated_at = "2026-11-23T09:00:01.000Z";
    release.commit = "3f2c";
    release.message = "Fix header";
    release.port = 41234;

    const auto object = release_to_json(release);
    CHECK(object["id"] == "v3");
    CHECK(object["state"] == "PRODUCTION");
    CHECK(object["error"].is_null());
    CHECK(object["port"] == 41234);

    agent::AppStatus status;
    status.app = "hello";
    status.production = "v3";
    status.url = "http://hello.localhost:8080/";
    status.domains = {"hello.example.com"};
    status.releases = {release};
    status.state = "stopped";
    status.commit = "3f2c";
    const auto status_json = status_to_json(status);
    CHECK(status_json["production"] == "v3");
    CHECK(status_json["state"] == "stopped");
    CHECK(status_json["domains"][0] == "hello.example.com");
    CHECK(status_json["releases"][0]["id"] == "v3");
    CHECK(app_summary_to_json(status) == json{{"app", "hello"},
                                              {"production", "v3"},
                                              {"state", "stopped"},
                                              {"commit", "3f2c"},
                                              {"url", "http://hello.localhost:8080/"}});

    SUBCASE("done event: url on success, error when FAILED") {
        auto done = done_event(release, status.url);
        CHECK(done["event"] == "done");
        CHECK(done["url"] == status.url);
        CHECK(done["error"].is_null());
        release.state = common::State::failed;
        release.error = "health check failed";
        done = done_event(release, status.url);
        CHECK(done["state"] == "FAILED");
        CHECK(done["url"].is_null());
        CHECK(done["error"] == "health check failed");
    }
}
