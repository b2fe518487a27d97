// deploy-proxy routing table: parsing, host normalization, lookups, reloads.
#include <agent/proxy/route_loader.hpp>
#include <agent/proxy/routes.hpp>
#include <common/fs.hpp>

#include <doctest/doctest.h>

#include "temp_dir.hpp"

using namespace agent::proxy;

namespace {

constexpr std::string_view k_two_routes = R"({"generation": 7, "routes": [
    {"host": "hello.localhost", "app": "hello", "release": "v3", "upstream": "127.0.0.1:41234"},
    {"host": "Shop.Example.COM.", "app": "shop", "release": "v1", "upstream": "[::1]:5000"}]})";

std::string table_json(int generation, std::string_view upstream) {
    return "{\"generation\": " + std::to_string(generation) +
           ", \"routes\": [{\"host\": \"hello.localhost\", \"app\": \"hello\", \"release\": "
           "\"v1\", \"upstream\": \"" +
           std::string(upstream) + "\"}]}";
}

} // namespace

TEST_CASE("parse_routes reads a valid table") {
    auto table = parse_routes(k_two_routes, "routes.json");
    REQUIRE(table.ok());
    CHECK(table->generation() == 7);
    CHECK(table->size() == 2);
    const Route* hello = table->find("hello.localhost");
    REQUIRE(hello != nullptr);
    CHECK(hello->app == "hello");
    CHECK(hello->release == "v3");
    CHECK(hello->upstream == "127.0.0.1:41234");
    CHECK(hello->upstream_address == "127.0.0.1");
    CHECK(hello->upstream_port == 41234);
    const Route* shop = table->find("shop.example.com");
    REQUIRE(shop != nullptr);
    CHECK(shop->upstream_address == "::1");
    CHECK(shop->upstream_port == 5000);
}

TEST_CASE("a *.DOMAIN route takes the names one label below it that no route names") {
    auto table = parse_routes(R"({"generation": 1, "routes": [
        {"host": "*.Wild.Example.com", "app": "wild", "release": "v1", "upstream": "127.0.0.1:1"},
        {"host": "www.wild.example.com", "app": "www", "release": "v1", "upstream": "127.0.0.1:2"}]})",
                              "routes.json");
    REQUIRE(table.ok());
    const Route* a = table->find("a.wild.example.com");
    REQUIRE(a != nullptr);
    CHECK(a->app == "wild");
    CHECK(table->find("www.wild.example.com")->app == "www"); // an exact route wins
    CHECK(table->find("wild.example.com") == nullptr);        // not the domain itself
    CHECK(table->find("a.b.wild.example.com") == nullptr);    // one label only
    CHECK(table->find("a.example.com") == nullptr);
    for (const char* bad : {"*", "*.", "**.example.com", "*.exa mple.com", "*.[::1]"}) {
        auto refused =
            parse_routes(std::string(R"({"generation": 1, "routes": [{"host": ")") + bad +
                             R"(", "app": "w", "release": "v1", "upstream": "127.0.0.1:1"}]})",
                         "routes.json");
        CHECK_MESSAGE(!refused.ok(), bad);
    }
}

TEST_CASE("parse_routes accepts an empty table") {
    auto table = parse_routes(R"({"generation": 0, "routes": []})", "routes.json");
    REQUIRE(table.ok());
    CHECK(table->size() == 0);
    CHECK(table->find("hello.localhost") == nullptr);
}

TEST_CASE("parse_routes refuses malformed tables") {
    auto refused = [](std::string_view json) {
        auto table = parse_routes(json, "/data/proxy/routes.json");
        REQUIRE_FALSE(table.ok());
        CHECK(table.error().kind == common::ErrorKind::config);
        CHECK(table.error().message.find("/data/proxy/routes.json") != std::string::npos);
        return table.error().message;
    };
    SUBCASE("not JSON") {
        refused(R"({"generation": 1, "routes": [)");
    }
    SUBCASE("empty file") {
        refused("");
    }
    SUBCASE("not an object") {
        refused("[]");
    }
    SUBCASE("no generation") {
        refused(R"({"routes": []})");
    }
    SUBCASE("negative generation") {
        refused(R"({"generation": -1, "routes": []})");
    }
    SUBCASE("no routes") {
        refused(R"({"generation": 1})");
    }
    SUBCASE("route not an object") {
        refused(R"({"generation": 1, "routes": [3]})");
    }
    SUBCASE("missing app") {
        auto message = refused(R"({"generation": 1, "routes": [{"host": "a.localhost",
            "release": "v1", "upstream": "127.0.0.1:80"}]})");
        CHECK(message.find("routes[0].app") != std::string::npos);
    }
    SUBCASE("host with a port") {
        auto message = refused(R"({"generation": 1, "routes": [{"host": "a.localhost:80",
            "app": "a", "release": "v1", "upstream": "127.0.0.1:80"}]})");
        CHECK(message.find("not a host name") != std::string::npos);
    }
    SUBCASE("upstream is a name") {
        refused(table_json(1, "localhost:8000"));
    }
    SUBCASE("upstream without port") {
        refused(table_json(1, "127.0.0.1"));
    }
    SUBCASE("upstream port 0") {
        refused(table_json(1, "127.0.0.1:0"));
    }
    SUBCASE("upstream port too big") {
        refused(table_json(1, "127.0.0.1:70000"));
    }
    SUBCASE("duplicate host") {
        auto message = refused(R"({"generation": 1, "routes": [
            {"host": "a.localhost", "app": "a", "release": "v1", "upstream": "127.0.0.1:80"},
            {"host": "A.localhost", "app": "b", "release": "v1", "upstream": "127.0.0.1:81"}]})");
        CHECK(message.find("twice") != std::string::npos);
    }
}

TEST_CASE("parse_routes reads static routes") {
    auto table = parse_routes(R"({"generation": 2, "routes": [
        {"host": "site.localhost", "app": "site", "release": "v4",
         "static": {"root": "/data/apps/site/releases/v4/dist", "spa": true}},
        {"host": "docs.localhost", "app": "docs", "release": "v1",
         "static": {"root": "/does/not/exist/yet"}},
        {"host": "api.localhost", "app": "api", "release": "v1", "upstream": "127.0.0.1:8000"}]})",
                              "routes.json");
    REQUIRE(table.ok());
    const Route* site = table->find("site.localhost");
    REQUIRE(site != nullptr);
    CHECK(site->is_static());
    CHECK(site->static_root == "/data/apps/site/releases/v4/dist");
    CHECK(site->spa);
    CHECK(site->upstream.empty());
    const Route* docs = table->find("docs.localhost");
    REQUIRE(docs != nullptr);
    CHECK(docs->is_static());
    CHECK_FALSE(docs->spa);
    const Route* api = table->find("api.localhost");
    REQUIRE(api != nullptr);
    CHECK_FALSE(api->is_static());
}

TEST_CASE("parse_routes refuses bad static routes") {
    auto refused = [](std::string_view route) {
        auto table = parse_routes("{\"generation\": 1, \"routes\": [{\"host\": \"a.localhost\", "
                                  "\"app\": \"a\", \"release\": \"v1\", " +
                                      std::string(route) + "}]}",
                                  "routes.json");
        REQUIRE_FALSE(table.ok());
        return table.error().message;
    };
    SUBCASE("stopped with an upstream") {
        auto message = refused(R"("stopped": true, "upstream": "127.0.0.1:80")");
        CHECK(message.find("routes[0].stopped must be true or \"scaled\", without") !=
              std::string::npos);
    }
    SUBCASE("stopped false") {
        CHECK(refused(R"("stopped": false)").find("stopped must be true") != std::string::npos);
    }
    SUBCASE("stopped with another reason") {
        CHECK(refused(R"("stopped": "paused")").find("stopped must be true") != std::string::npos);
    }
    SUBCASE("neither upstream nor static") {
        auto message = refused(R"("spa": true)");
        CHECK(message.find("exactly one of") != std::string::npos);
    }
    SUBCASE("both upstream and static") {
        auto message = refused(R"("upstream": "127.0.0.1:80", "static": {"root": "/srv"})");
        CHECK(message.find("exactly one of") != std::string::npos);
    }
    SUBCASE("relative root") {
        auto message = refused(R"("static": {"root": "dist"})");
        CHECK(message.find("routes[0].static.root must be an absolute") != std::string::npos);
    }
    SUBCASE("missing root") {
        CHECK(refused(R"("static": {"spa": true})").find("static.root") != std::string::npos);
    }
    SUBCASE("static not an object") {
        CHECK(refused(R"("static": "/srv")").find("routes[0].static must be an object") !=
              std::string::npos);
    }
    SUBCASE("spa not a boolean") {
        CHECK(refused(R"("static": {"root": "/srv", "spa": "yes"})").find("spa") !=
              std::string::npos);
    }
}

TEST_CASE("normalize_host") {
    CHECK(normalize_host("hello.localhost") == "hello.localhost");
    CHECK(normalize_host("HeLLo.LocalHost") == "hello.localhost");
    CHECK(normalize_host("hello.localhost:8080") == "hello.localhost");
    CHECK(normalize_host("hello.localhost.") == "hello.localhost");
    CHECK(normalize_host("Hello.Localhost.:8080") == "hello.localhost");
    CHECK(normalize_host("127.0.0.1:8080") == "127.0.0.1");
    CHECK(normalize_host("[::1]:8080") == "::1");
    SUBCASE("values that cannot be hosts normalize to empty") {
        CHECK(normalize_host("") == "");
        CHECK(normalize_host(":8080") == "");
        CHECK(normalize_host("evil host") == "");
        CHECK(normalize_host("a/b") == "");
        CHECK(normalize_host("[::1") == "");
    }
    SUBCASE("the in-place form reuses its buffer") {
        std::string out = "previous-value-that-is-long";
        normalize_host("A.B", out);
        CHECK(out == "a.b");
    }
}

TEST_CASE("an unknown host has no route") {
    auto table = parse_routes(k_two_routes, "routes.json");
    REQUIRE(table.ok());
    CHECK(table->find("other.localhost") == nullptr);
    CHECK(table->find("localhost") == nullptr);
    CHECK(table->find("hello.localhost.evil.com") == nullptr);
    CHECK(table->find("") == nullptr);
}

TEST_CASE("RouteLoader keeps the previous table when the file is bad") {
    test::TempDir dir;
    const auto routes = dir.path() / "routes.json";
    const auto applied = dir.path() / "applied";
    RouteLoader loader(routes, applied);

    SUBCASE("a missing file at startup is an empty table") {
        auto table = loader.reload();
        REQUIRE(table.ok());
        CHECK((*table)->size() == 0);
        CHECK_FALSE(loader.changed());
    }
    SUBCASE("bad writes and a vanished file change nothing") {
        REQUIRE(common::atomic_write_file(routes, table_json(3, "127.0.0.1:9001")).ok());
        REQUIRE(loader.reload().ok());
        CHECK(loader.table()->generation() == 3);

        REQUIRE(common::atomic_write_file(routes, "{\"generation\": 4, \"routes\": [").ok());
        CHECK(loader.changed());
        CHECK_FALSE(loader.reload().ok());
        CHECK_FALSE(loader.changed()); // the bad file is not re-read every tick
        CHECK(loader.table()->generation() == 3);
        REQUIRE(loader.table()->find("hello.localhost") != nullptr);
        CHECK(loader.table()->find("hello.localhost")->upstream_port == 9001);

        std::filesystem::remove(routes);
        CHECK(loader.changed());
        CHECK_FALSE(loader.reload().ok());
        CHECK(loader.table()->generation() == 3);

        REQUIRE(common::atomic_write_file(routes, table_json(5, "127.0.0.1:9002")).ok());
        CHECK(loader.changed());
        REQUIRE(loader.reload().ok());
        CHECK(loader.table()->generation() == 5);
        CHECK(loader.table()->find("hello.localhost")->upstream_port == 9002);
    }
    SUBCASE("write_applied records the generation") {
        REQUIRE(loader.write_applied(12).ok());
        auto text = common::read_file(applied);
        REQUIRE(text.ok());
        CHECK(*text == "12\n");
    }
}

TEST_CASE("parse_routes reads the route of a stopped app") {
    auto table = parse_routes(R"({"generation": 3, "routes": [{"host": "Hello.localhost",
        "app": "hello", "release": "v2", "stopped": true}]})",
                              "routes.json");
    REQUIRE(table.ok());
    const Route* hello = table->find("hello.localhost");
    REQUIRE(hello != nullptr);
    CHECK(hello->stopped);
    CHECK_FALSE(hello->scaled_to_zero);
    CHECK_FALSE(hello->is_static());
    CHECK(hello->upstream.empty());
    CHECK(hello->release == "v2");
}

TEST_CASE("parse_routes reads the route of an app scaled to zero") {
    auto table = parse_routes(R"({"generation": 3, "routes": [{"host": "hello.localhost",
        "app": "hello", "release": "v2", "stopped": "scaled"}]})",
                              "routes.json");
    REQUIRE(table.ok());
    const Route* hello = table->find("hello.localhost");
    REQUIRE(hello != nullptr);
    CHECK(hello->stopped);
    CHECK(hello->scaled_to_zero);
    CHECK(hello->upstream.empty());
}

TEST_CASE("parse_routes reads an app route's limits, with defaults for those left out") {
    auto table = parse_routes(R"({"generation": 3, "routes": [
        {"host": "a.localhost", "app": "a", "release": "v1", "upstream": "127.0.0.1:80",
         "limits": {"max_body": 0, "read_timeout_ms": 1500}},
        {"host": "b.localhost", "app": "b", "release": "v1", "upstream": "127.0.0.1:81"}]})",
                              "routes.json");
    REQUIRE(table.ok());
    const Route* a = table->find("a.localhost");
    REQUIRE(a != nullptr);
    CHECK(a->max_body == 0);
    CHECK(a->read_timeout == std::chrono::milliseconds(1500));
    CHECK(a->connect_timeout == agent::proxy::k_connect_timeout);
    const Route* b = table->find("b.localhost");
    REQUIRE(b != nullptr);
    CHECK(b->max_body == agent::proxy::k_default_max_body);
    CHECK(b->websocket_idle == agent::proxy::k_websocket_idle);
    auto refused = [](std::string_view limits) {
        auto bad = parse_routes(std::string(R"({"generation": 1, "routes": [{"host": "a.localhost",
            "app": "a", "release": "v1", "upstream": "127.0.0.1:80", "limits": )") +
                                    std::string(limits) + "}]}",
                                "routes.json");
        REQUIRE_FALSE(bad.ok());
        return bad.error().message;
    };
    CHECK(refused(R"({"read_timeout_ms": 0})").find("must be 1 to") != std::string::npos);
    CHECK(refused(R"({"max_body": -1})").find("whole number") != std::string::npos);
    CHECK(refused(R"({"idle": 5})").find("unknown key \"idle\"") != std::string::npos);
    CHECK(refused("[]").find("must be an object") != std::string::npos);
}

TEST_CASE("parse_routes reads maintenance and pause, on any kind of route") {
    test::TempDir dir;
    const auto page = dir.path() / "maintenance.html";
    REQUIRE(common::atomic_write_file(page, "<h1>upgrading</h1>\n").ok());
    const std::string text =
        R"({"generation": 1, "routes": [
        {"host": "a.localhost", "app": "a", "release": "v1", "upstream": "127.0.0.1:4000",
         "maintenance": {"message": "Back soon", "retry_after": 300, "page": ")" +
        page.string() + R"("}},
        {"host": "b.localhost", "app": "b", "release": "v1", "stopped": true,
         "maintenance": {}},
        {"host": "c.localhost", "app": "c", "release": "v1", "upstream": "127.0.0.1:4001",
         "pause": {"timeout_ms": 1500}},
        {"host": "d.localhost", "app": "d", "release": "v1", "upstream": "127.0.0.1:4002",
         "maintenance": {"page": "/nonexistent/maintenance.html"}}]})";
    auto table = parse_routes(text, "routes.json");
    REQUIRE(table.ok());
    const Route* a = table->find("a.localhost");
    REQUIRE(a->maintenance);
    CHECK(a->maintenance->message == "Back soon");
    CHECK(a->maintenance->retry_after == 300);
    CHECK(a->maintenance->page == "<h1>upgrading</h1>\n");
    CHECK(a->maintenance->json ==
          "{\"error\":\"Back soon\",\"maintenance\":true,\"retry_after\":300}\n");
    CHECK_FALSE(a->paused());
    const Route* b = table->find("b.localhost");
    REQUIRE(b->maintenance);
    CHECK(b->stopped);
    CHECK(b->maintenance->message.empty());
    CHECK(b->maintenance->json ==
          "{\"error\":\"b is down for maintenance\",\"maintenance\":true}\n");
    const Route* c = table->find("c.localhost");
    CHECK_FALSE(c->maintenance);
    CHECK(c->paused());
    CHECK(c->pause == std::chrono::milliseconds(1500));
    // A page that cannot be read: the built-in one (the table still loads).
    const Route* d = table->find("d.localhost");
    REQUIRE(d->maintenance);
    CHECK(d->maintenance->page.find("<h1>Down for maintenance</h1>\n<p>d is down for "
                                    "maintenance</p>") != std::string::npos);
}

TEST_CASE("parse_routes reads a sleeping app's route (idle_stop) and refuses a malformed one") {
    auto table = parse_routes(R"({"generation": 1, "routes": [
        {"host": "a.localhost", "app": "a", "release": "v1", "sleeping": {"timeout_ms": 40000}},
        {"host": "b.localhost", "app": "b", "release": "v2",
         "sleeping": {"timeout_ms": 5000, "error": "app exited with status 3 \"x\""}},
        {"host": "c.localhost", "app": "c", "release": "v1", "upstream": "127.0.0.1:4000"}]})",
                              "routes.json");
    REQUIRE(table.ok());
    const Route* a = table->find("a.localhost");
    CHECK(a->sleeping());
    CHECK(a->wake == std::chrono::milliseconds(40000));
    CHECK(a->upstreams.empty());
    CHECK(a->wake_error.empty());
    const Route* b = table->find("b.localhost");
    CHECK(b->sleeping());
    CHECK(b->wake_error ==
          "b could not be started: app exited with status 3 \"x\"; the next request tries again\n");
    CHECK(b->wake_error_json == "{\"error\":\"b could not be started: app exited with status 3 "
                                "\\\"x\\\"; the next request tries again\"}\n");
    CHECK_FALSE(table->find("c.localhost")->sleeping());

    auto with = [](std::string_view fields) {
        return std::string(R"({"generation": 1, "routes": [{"host": "a.localhost", "app": "a",
            "release": "v1", )") +
               std::string(fields) + "}]}";
    };
    for (std::string_view fields :
         {R"("sleeping": {})", R"("sleeping": {"timeout_ms": 0})",
          R"("sleeping": {"timeout_ms": 86400001})", R"("sleeping": {"timeout_ms": 5, "x": 1})",
          R"("sleeping": {"timeout_ms": 5, "error": ""})",
          R"("sleeping": {"timeout_ms": 5, "error": 3})", R"("sleeping": true)",
          R"("sleeping": {"timeout_ms": 5}, "upstream": "127.0.0.1:4000")",
          R"("sleeping": {"timeout_ms": 5}, "stopped": true)"}) {
        CAPTURE(fields);
        auto bad = parse_routes(with(fields), "routes.json");
        REQUIRE_FALSE(bad.ok());
        CHECK(bad.error().message.find("routes.json: routes[0].sleeping") == 0);
    }
}

TEST_CASE("parse_routes does not follow a link to a maintenance page") {
    test::TempDir dir;
    const auto secret = dir.path() / "secret";
    REQUIRE(common::atomic_write_file(secret, "secret\n").ok());
    const auto link = dir.path() / "maintenance.html";
    std::filesystem::create_symlink(secret, link);
    auto table = parse_routes(R"({"generation": 1, "routes": [{"host": "a.localhost", "app": "a",
        "release": "v1", "upstream": "127.0.0.1:4000", "maintenance": {"page": ")" +
                                  link.string() + R"("}}]})",
                              "routes.json");
    REQUIRE(table.ok());
    REQUIRE(table->find("a.localhost")->maintenance);
    const std::string& page = table->find("a.localhost")->maintenance->page;
    CHECK(page.find("secret") == std::string::npos);
    CHECK(page.find("<h1>Down for maintenance</h1>") != std::string::npos);
}

TEST_CASE("parse_routes refuses malformed maintenance and pause") {
    auto with = [](std::string_view field) {
        return std::string(R"({"generation": 1, "routes": [{"host": "a.localhost", "app": "a",
            "release": "v1", "upstream": "127.0.0.1:4000", )") +
               std::string(field) + "}]}";
    };
    for (std::string_view field :
         {R"("maintenance": true)", R"("maintenance": {"message": 5})",
          R"("maintenance": {"retry_after": -1})", R"("maintenance": {"page": "relative.html"})",
          R"("maintenance": {"colour": "red"})", R"("pause": {})", R"("pause": {"timeout_ms": 0})",
          R"("pause": {"timeout_ms": 86400001})", R"("pause": {"timeout_ms": 5, "x": 1})",
          R"("pause": 30000)"}) {
        CAPTURE(field);
        auto table = parse_routes(with(field), "routes.json");
        REQUIRE_FALSE(table.ok());
        CHECK(table.error().message.find("routes.json: routes[0].") == 0);
    }
}
