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

// Turns the client's request into the one sent upstream, in place: HTTP/1.1,
// keep-alive, no hop-by-hop fields, the body framed as the client framed it
// (`chunked`: Transfer-Encoding: chunked, the proxy re-chunks it; else the
// client's Content-Length, `content_length`), X-Forwarded-For/-Proto/-Host
// (`proto`: "http" or "https", how the client reached us). `scratch` is
// reused to avoid allocations.
void prepare_upstream_request(boost::beast::http::request_header<>& request, bool chunked,
                              std::uint64_t content_length, std::string_view client_ip,
                              std::string_view proto, std::string& scratch);

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

// After prepare_upstream_request: puts back the hop-by-hop fields an upgrade
// needs (Connection: upgrade, Upgrade: `protocol`).
void keep_upgrade(boost::beast::http::request_header<>& request, std::string_view protocol);

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
void serialize_header(const boost::beast::http::request_header<>& request, std::string& out);
void serialize_header(const boost::beast::http::response_header<>& response, std::string& out);

} // namespace agent::proxy
