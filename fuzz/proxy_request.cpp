// deploy-proxy forwarding a client's request to an app, as agent/proxy/session.cpp
// does it: the bytes a client sent -> Beast's request parser (the proxy's header
// and body limits) -> normalize_host(Host) -> upstream_request_head + body, the
// bytes written to the app.
// Properties of what the app receives:
// - Beast parses it as exactly one complete request that uses every byte (no
//   second request smuggled in, nothing left over), with the same method,
//   target and body;
// - it is framed by a Content-Length equal to the body (no Transfer-Encoding),
//   keep-alive HTTP/1.1, and carries no hop-by-hop field;
// - one X-Forwarded-For, ending with the client's address; X-Forwarded-Proto is
//   ours; no X-Deploy-Probe.

#include <agent/proxy/headers.hpp>
#include <agent/proxy/limits.hpp>
#include <agent/proxy/routes.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "check.hpp"

namespace {

namespace http = boost::beast::http;

constexpr std::string_view k_client_ip = "203.0.113.7";
// The proxy streams bodies; this harness holds one whole, as a Content-Length one.
constexpr std::uint64_t k_body_limit = 64ull * 1024 * 1024;
using Request = http::request<http::string_body>;

// Parses one request from `bytes`; how many bytes it used, 0 when incomplete or refused.
std::size_t parse(std::string_view bytes, http::request_parser<http::string_body>& parser) {
    parser.header_limit(agent::proxy::k_header_limit);
    parser.body_limit(k_body_limit);
    parser.eager(true);
    boost::beast::error_code ec;
    std::size_t used = 0;
    while (!parser.is_done() && used < bytes.size()) {
        const auto n =
            parser.put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
        if (ec == http::error::need_more)
            break;
        if (ec)
            return 0;
        if (n == 0)
            break;
        used += n;
    }
    if (!parser.is_done()) {
        parser.put_eof(ec); // the client closed: a body delimited by the close ends here
        if (ec || !parser.is_done())
            return 0;
    }
    return used;
}

void check_upstream(const Request& sent, const std::string& wire) {
    http::request_parser<http::string_body> parser;
    const auto used = parse(wire, parser);
    FUZZ_CHECK(used == wire.size());
    const auto& got = parser.get();
    FUZZ_CHECK(got.method_string() == sent.method_string());
    FUZZ_CHECK(got.target() == sent.target());
    FUZZ_CHECK(got.body() == sent.body());
    FUZZ_CHECK(got.version() == 11 && got.keep_alive());
    FUZZ_CHECK(!parser.chunked());
    FUZZ_CHECK(got.count(http::field::transfer_encoding) == 0);
    FUZZ_CHECK(got.count(http::field::content_length) <= 1);
    if (!got.body().empty())
        FUZZ_CHECK(parser.content_length() && *parser.content_length() == got.body().size());
    for (auto field :
         {http::field::keep_alive, http::field::proxy_authorization, http::field::proxy_connection,
          http::field::te, http::field::trailer, http::field::upgrade, http::field::expect})
        FUZZ_CHECK(got.count(field) == 0);
    FUZZ_CHECK(got.count("X-Forwarded-For") == 1 && got.count("X-Deploy-Probe") == 0);
    const std::string_view forwarded = got["X-Forwarded-For"];
    FUZZ_CHECK(forwarded.size() >= k_client_ip.size() &&
               forwarded.substr(forwarded.size() - k_client_ip.size()) == k_client_ip);
    FUZZ_CHECK(got.count("X-Forwarded-Proto") == 1 && got["X-Forwarded-Proto"] == "http");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    http::request_parser<http::string_body> parser;
    if (parse(bytes, parser) == 0)
        return 0;
    Request request = parser.release();
    const auto host = request[http::field::host];
    if (host.empty())
        return 0; // answered 400 by the proxy itself
    std::string key;
    agent::proxy::normalize_host(host, key);
    agent::proxy::UpstreamRequest how;
    how.content_length = request.body().size();
    how.client_ip = k_client_ip;
    how.proto = "http";
    std::string wire;
    agent::proxy::upstream_request_head(request, how, wire);
    wire += request.body();
    check_upstream(request, wire);
    return 0;
}
