#pragma once
// Header rewriting between client and upstream (RFC 9110 §7.6: hop-by-hop
// fields are not forwarded; X-Forwarded-* tell the app who asked).

#include <agent/proxy/upgrade.hpp>

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace agent::proxy {

// Request bodies are streamed (a fixed buffer at a time), never held whole.
using RequestParser = boost::beast::http::request_parser<boost::beast::http::buffer_body>;
using ResponseParser = boost::beast::http::response_parser<boost::beast::http::buffer_body>;

// What the request sent upstream has that the client's has not (upstream_request_head).
struct UpstreamRequest {
    // The body as the client framed it: Transfer-Encoding: chunked (the proxy re-chunks
    // it), else the client's Content-Length (sent when not 0, and for POST, PUT and PATCH).
    bool chunked = false;
    std::uint64_t content_length = 0;
    std::string_view client_ip; // appended to X-Forwarded-For
    std::string_view proto;     // X-Forwarded-Proto: "http" or "https", how the client came
    // X-Request-Id in place of the client's (empty: the client's goes as it is).
    std::string_view request_id;
    // An upgrade (upgrade.hpp): Connection: upgrade and Upgrade: this protocol go on.
    std::string_view upgrade;
};

// The head of the request sent upstream for the client's `request`, into `out` (replaced;
// its capacity is reused), in one pass and without touching `request`: HTTP/1.1 and
// keep-alive, without the hop-by-hop fields (RFC 9110 §7.6.1: the fixed ones and those
// the Connection field names), Expect (the proxy answers it), the client's framing and its
// X-Forwarded-Proto/-Host and X-Deploy-Probe; then the framing, X-Request-Id when replaced,
// X-Forwarded-For (the client's, all of them in order, then `client_ip`), -Proto and
// -Host (the Host field's value), and an upgrade's Connection and Upgrade.
void upstream_request_head(const boost::beast::http::request_header<>& request,
                           const UpstreamRequest& how, std::string& out);

// The agent's proof that a release is live (docs/design.md §8): a request
// whose X-Deploy-Probe is the agent's probe key is a probe; the field is
// always removed before forwarding, and only a probe's answer gets
// X-Deploy-Routed ("APP RELEASE", or "none").
inline constexpr std::string_view k_probe_field = "X-Deploy-Probe";
inline constexpr std::string_view k_routed_field = "X-Deploy-Routed";
// Every request an app gets carries one (the client's, or one the proxy made).
inline constexpr std::string_view k_request_id_field = "X-Request-Id";

// upgrade_protocol (upgrade.hpp) of `request`.
std::string upgrade_protocol(const boost::beast::http::request_header<>& request);

struct ClientFraming {
    unsigned version = 11;
    bool keep_alive = true;
};

// Rewrites the upstream response header (just parsed by `parser`) for the
// client: drops hop-by-hop fields and re-frames the body for the client's
// HTTP version. Returns whether the client connection can stay open.
bool prepare_client_response(ResponseParser& parser, ClientFraming client);

// The request line (or status line), the fields and the blank line, into
// `out` (replaced; its capacity is reused): byte for byte what Beast's
// serializer writes, as one contiguous buffer, so that a message goes out in
// one write of one or two buffers instead of an iovec per field.
void serialize_header(const boost::beast::http::response_header<>& response, std::string& out);

} // namespace agent::proxy
