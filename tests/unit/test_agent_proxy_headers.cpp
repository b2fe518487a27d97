// deploy-proxy: the head of the request it sends upstream (upstream_request_head): the
// client's fields but the hop-by-hop ones and those the proxy sets, then framing,
// X-Request-Id, X-Forwarded-* and an upgrade's fields, parsed from real request bytes.
#include <agent/proxy/headers.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <doctest/doctest.h>

#include <string>

using namespace agent::proxy;
namespace http = boost::beast::http;

namespace {

// The request header of `text` (a request head, CRLF-terminated).
http::request_header<> parse(std::string text) {
    http::request_parser<http::empty_body> parser;
    parser.eager(false);
    boost::beast::error_code ec;
    parser.put(boost::asio::buffer(text), ec);
    REQUIRE_MESSAGE(!ec, ec.message());
    REQUIRE(parser.is_header_done());
    return parser.release().base();
}

std::string head(const std::string& text, UpstreamRequest how = {}) {
    if (how.client_ip.empty())
        how.client_ip = "10.0.0.9";
    if (how.proto.empty())
        how.proto = "http";
    std::string out = "left over from the last request";
    upstream_request_head(parse(text), how, out);
    return out;
}

} // namespace

TEST_CASE("upstream_request_head: a plain GET") {
    CHECK(head("GET /a?b=c HTTP/1.1\r\nHost: app.example\r\nAccept: */*\r\n\r\n") ==
          "GET /a?b=c HTTP/1.1\r\n"
          "Host: app.example\r\n"
          "Accept: */*\r\n"
          "X-Forwarded-For: 10.0.0.9\r\n"
          "X-Forwarded-Proto: http\r\n"
          "X-Forwarded-Host: app.example\r\n"
          "\r\n");
}

TEST_CASE("upstream_request_head: HTTP/1.0 goes as HTTP/1.1, keep-alive") {
    CHECK(head("GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n") ==
          "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.9\r\n"
          "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n");
}

TEST_CASE("upstream_request_head: hop-by-hop fields stay behind") {
    const auto out = head("GET / HTTP/1.1\r\nHost: h\r\nConnection: close, X-Secret\r\n"
                          "Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\n"
                          "Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\n"
                          "Upgrade: websocket\r\nx-secret: 1\r\nX-Kept: 2\r\n"
                          "connection: X-Other\r\nX-OTHER: 3\r\n\r\n");
    for (const char* gone :
         {"Connection", "Keep-Alive", "Proxy-", "TE:", "Trailer", "Upgrade", "x-secret", "X-OTHER"})
        CHECK_MESSAGE(out.find(gone) == std::string::npos, gone);
    CHECK(out.find("X-Kept: 2\r\n") != std::string::npos);
}

TEST_CASE("upstream_request_head: a Connection field naming more than 16 fields") {
    std::string names, fields;
    for (int i = 0; i < 20; ++i) {
        names += (i ? ", X-Hop" : "X-Hop") + std::to_string(i);
        fields += "X-Hop" + std::to_string(i) + ": v\r\n";
    }
    const auto out =
        head("GET / HTTP/1.1\r\nHost: h\r\nConnection: " + names + "\r\n" + fields + "\r\n");
    CHECK(out.find("X-Hop") == std::string::npos);
}

TEST_CASE("upstream_request_head: the fields the proxy sets replace the client's") {
    UpstreamRequest how;
    how.proto = "https";
    how.content_length = 12;
    const auto out =
        head("POST /form HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: http\r\n"
             "X-Forwarded-Host: evil\r\nx-deploy-probe: key\r\nExpect: 100-continue\r\n"
             "Content-Length: 12\r\n\r\n",
             how);
    CHECK(out == "POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n"
                 "X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: https\r\n"
                 "X-Forwarded-Host: h\r\n\r\n");
}

TEST_CASE("upstream_request_head: X-Forwarded-For lists the client's, then this client") {
    const auto out = head("GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nHost: h\r\n"
                          "x-forwarded-for: 2.2.2.2, 3.3.3.3\r\nX-Forwarded-For: \r\n\r\n");
    CHECK(out == "GET / HTTP/1.1\r\nHost: h\r\n"
                 "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9\r\n"
                 "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n");
}

TEST_CASE("upstream_request_head: framing") {
    SUBCASE("a chunked body goes chunked, whatever the client said of its length") {
        UpstreamRequest how;
        how.chunked = true;
        const auto out = head("PUT /f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n"
                              "\r\n",
                              how);
        CHECK(out.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
        CHECK(out.find("gzip") == std::string::npos);
        CHECK(out.find("Content-Length") == std::string::npos);
    }
    SUBCASE("POST, PUT and PATCH say their length, even 0; GET does not") {
        CHECK(head("POST / HTTP/1.1\r\nHost: h\r\n\r\n").find("Content-Length: 0\r\n") !=
              std::string::npos);
        CHECK(head("PATCH / HTTP/1.1\r\nHost: h\r\n\r\n").find("Content-Length: 0\r\n") !=
              std::string::npos);
        CHECK(head("GET / HTTP/1.1\r\nHost: h\r\n\r\n").find("Content-Length") ==
              std::string::npos);
    }
}

TEST_CASE("upstream_request_head: X-Request-Id") {
    const std::string text = "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: client-1\r\n\r\n";
    CHECK(head(text).find("X-Request-Id: client-1\r\n") != std::string::npos);
    UpstreamRequest how;
    how.request_id = "proxy-2";
    const auto out = head(text, how);
    CHECK(out.find("client-1") == std::string::npos);
    CHECK(out.find("X-Request-Id: proxy-2\r\n") != std::string::npos);
}

TEST_CASE("upstream_request_head: an upgrade keeps its Connection and Upgrade") {
    UpstreamRequest how;
    how.upgrade = "websocket";
    const auto out = head("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
                          "Upgrade: WebSocket\r\nSec-WebSocket-Key: k\r\n\r\n",
                          how);
    CHECK(out == "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\n"
                 "X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n"
                 "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
}
