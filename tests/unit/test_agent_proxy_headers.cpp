// deploy-proxy: which requests are upgrades (WebSocket), forwarded with their
// Connection/Upgrade kept, and which are plain HTTP.
// headers.cpp belongs to the deploy-proxy executable (Beast), not to
// deploy_proxy_core: this test compiles it in, with the executable's setting.
#ifndef BOOST_BEAST_USE_STD_STRING_VIEW
#define BOOST_BEAST_USE_STD_STRING_VIEW
#endif
#include <agent/proxy/headers.cpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

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

TEST_CASE("WebSocketFrames follows frame boundaries, whatever the reads' sizes") {
    // A text frame "hi" (2 bytes), a 300-byte binary frame (16-bit length), a
    // masked 1-byte frame, a 70000-byte frame (64-bit length).
    std::string stream = std::string("\x81\x02hi", 4);
    stream += std::string("\x82\x7e\x01\x2c", 4) + std::string(300, 'x');
    stream += std::string("\x81\x81\x01\x02\x03\x04z", 7);
    stream += std::string("\x82\x7f\x00\x00\x00\x00\x00\x01\x11\x70", 10) + std::string(70000, 'y');
    const std::vector<std::size_t> ends = {4, 4 + 304, 4 + 304 + 7, stream.size()};
    for (std::size_t step : {std::size_t{1}, std::size_t{3}, std::size_t{1000}, stream.size()}) {
        WebSocketFrames frames;
        CHECK(frames.at_boundary());
        std::size_t at = 0;
        while (at < stream.size()) {
            const std::size_t n = std::min(step, stream.size() - at);
            frames.feed(stream.data() + at, n);
            at += n;
            const bool boundary = std::find(ends.begin(), ends.end(), at) != ends.end();
            if (step == 1 || boundary) {
                CHECK_MESSAGE(frames.at_boundary() == boundary, "step ", step, " at ", at);
            }
        }
        CHECK(frames.at_boundary());
    }
    WebSocketFrames half;
    half.feed("\x81", 1); // half a header
    CHECK_FALSE(half.at_boundary());
}
