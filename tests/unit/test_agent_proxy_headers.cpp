// deploy-proxy: which requests are upgrades (WebSocket), forwarded with their
// Connection/Upgrade kept, and which are plain HTTP.
#include <agent/proxy/headers.hpp>

#include <doctest/doctest.h>

using namespace agent::proxy;
namespace http = boost::beast::http;

namespace {
Request request_with(std::string_view connection, std::string_view upgrade, unsigned version = 11) {
    Request request{http::verb::get, "/socket", version};
    request.set(http::field::host, "web.localhost");
    if (!connection.empty()) {
        request.set(http::field::connection, connection);
    }
    if (!upgrade.empty()) {
        request.set(http::field::upgrade, upgrade);
    }
    return request;
}
} // namespace

TEST_CASE("upgrade_protocol: a WebSocket handshake is an upgrade") {
    CHECK(upgrade_protocol(request_with("Upgrade", "websocket")) == "websocket");
    CHECK(upgrade_protocol(request_with("upgrade", "WebSocket")) == "WebSocket");
    CHECK(upgrade_protocol(request_with("keep-alive, Upgrade", "websocket")) == "websocket");
}

TEST_CASE("upgrade_protocol: not an upgrade") {
    CHECK(upgrade_protocol(request_with("", "")).empty());
    CHECK(upgrade_protocol(request_with("keep-alive", "websocket")).empty());
    CHECK(upgrade_protocol(request_with("upgrade", "")).empty());
    CHECK(upgrade_protocol(request_with("upgrades", "websocket")).empty());
    CHECK(upgrade_protocol(request_with("Upgrade", "websocket", 10)).empty());
    // h2c is not offered: forwarded as plain HTTP.
    CHECK(upgrade_protocol(request_with("Upgrade, HTTP2-Settings", "h2c")).empty());
}

TEST_CASE("keep_upgrade puts back what prepare_upstream_request strips") {
    auto request = request_with("Upgrade", "websocket");
    request.set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    const auto protocol = upgrade_protocol(request);
    std::string scratch;
    prepare_upstream_request(request, "10.0.0.1", "https", scratch);
    CHECK(request.find(http::field::upgrade) == request.end()); // a plain request: stripped
    keep_upgrade(request, protocol);
    CHECK(request[http::field::connection] == "upgrade");
    CHECK(request[http::field::upgrade] == "websocket");
    CHECK(request["Sec-WebSocket-Key"] == "dGhlIHNhbXBsZSBub25jZQ==");
    CHECK(request["X-Forwarded-Proto"] == "https");
    CHECK(upgrade_protocol(request) == "websocket");
}
