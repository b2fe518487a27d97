// deploy-proxy: which requests are upgrades (WebSocket), forwarded with their
// Connection/Upgrade kept, and which are plain HTTP; the WebSocket frame
// boundaries the proxy follows to send its own close frame.
#include <agent/proxy/upgrade.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace agent::proxy;

TEST_CASE("upgrade_protocol: a WebSocket handshake is an upgrade") {
    CHECK(upgrade_protocol(11, "Upgrade", "websocket") == "websocket");
    CHECK(upgrade_protocol(11, "upgrade", " WebSocket ") == "WebSocket");
    CHECK(upgrade_protocol(11, "keep-alive, Upgrade", "websocket") == "websocket");
    CHECK(upgrade_protocol(11, "keep-alive,upgrade ", "websocket") == "websocket");
}

TEST_CASE("upgrade_protocol: not an upgrade") {
    CHECK(upgrade_protocol(11, "", "").empty());
    CHECK(upgrade_protocol(11, "", "websocket").empty());
    CHECK(upgrade_protocol(11, "keep-alive", "websocket").empty());
    CHECK(upgrade_protocol(11, "upgrade", "").empty());
    CHECK(upgrade_protocol(11, "upgrades", "websocket").empty());
    CHECK(upgrade_protocol(10, "Upgrade", "websocket").empty());
    // h2c is not offered: forwarded as plain HTTP.
    CHECK(upgrade_protocol(11, "Upgrade, HTTP2-Settings", "h2c").empty());
    CHECK(upgrade_protocol(11, "Upgrade", "H2C").empty());
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
