#include <agent/proxy/headers.hpp>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>
#include <array>

namespace agent::proxy {
namespace {

namespace http = boost::beast::http;

constexpr std::array k_hop_by_hop = {
    http::field::connection,
    http::field::keep_alive,
    http::field::proxy_authenticate,
    http::field::proxy_authorization,
    http::field::proxy_connection,
    http::field::te,
    http::field::trailer,
    http::field::upgrade,
};

constexpr std::string_view k_forwarded_for = "X-Forwarded-For";

// Drops the fixed hop-by-hop fields and those the Connection header names.
template <bool is_request> void erase_hop_by_hop(http::header<is_request>& message) {
    auto connection = message.find(http::field::connection);
    if (connection != message.end()) {
        std::string names(connection->value()); // erase() below invalidates the view
        for (auto name : http::token_list(names)) {
            message.erase(name);
        }
    }
    for (http::field field : k_hop_by_hop) {
        message.erase(field);
    }
}

void append_version(unsigned version, std::string& out) {
    out.append("HTTP/");
    out.push_back(static_cast<char>('0' + version / 10));
    out.push_back('.');
    out.push_back(static_cast<char>('0' + version % 10));
}

void append_fields(const http::fields& fields, std::string& out) {
    for (const auto& field : fields) {
        out.append(field.name_string());
        out.append(": ");
        out.append(field.value());
        out.append("\r\n");
    }
    out.append("\r\n");
}

} // namespace

void serialize_header(const http::request_header<>& request, std::string& out) {
    out.clear();
    out.append(request.method_string());
    out.push_back(' ');
    out.append(request.target());
    out.push_back(' ');
    append_version(request.version(), out);
    out.append("\r\n");
    append_fields(request, out);
}

void serialize_header(const http::response_header<>& response, std::string& out) {
    const unsigned code = response.result_int();
    out.clear();
    append_version(response.version(), out);
    out.push_back(' ');
    out.push_back(static_cast<char>('0' + code / 100 % 10));
    out.push_back(static_cast<char>('0' + code / 10 % 10));
    out.push_back(static_cast<char>('0' + code % 10));
    out.push_back(' ');
    auto reason = response.reason();
    out.append(reason.empty() ? http::obsolete_reason(response.result()) : reason);
    out.append("\r\n");
    append_fields(response, out);
}

void prepare_upstream_request(http::request_header<>& request, bool chunked,
                              std::uint64_t content_length, std::string_view client_ip,
                              std::string_view proto, std::string& scratch) {
    erase_hop_by_hop(request);
    request.erase(http::field::expect); // answered by the proxy itself
    request.erase(http::field::transfer_encoding);
    request.erase(http::field::content_length);
    if (chunked) {
        request.set(http::field::transfer_encoding, "chunked");
    } else if (content_length > 0 || request.method() == http::verb::post ||
               request.method() == http::verb::put || request.method() == http::verb::patch) {
        request.set(http::field::content_length, std::to_string(content_length));
    }

    auto forwarded_for = request.find(k_forwarded_for);
    if (forwarded_for == request.end()) {
        request.set(k_forwarded_for, client_ip);
    } else {
        scratch.assign(forwarded_for->value());
        scratch.append(", ");
        scratch.append(client_ip);
        request.set(k_forwarded_for, scratch);
    }
    request.set("X-Forwarded-Proto", proto);
    request.set("X-Forwarded-Host", request[http::field::host]);
    request.version(11);
    // HTTP/1.1 without a Connection field (erased above): keep-alive.
}

std::string upgrade_protocol(const http::request_header<>& request) {
    return upgrade_protocol(request.version(), request[http::field::connection],
                            request[http::field::upgrade]);
}

void keep_upgrade(http::request_header<>& request, std::string_view protocol) {
    request.set(http::field::connection, "upgrade");
    request.set(http::field::upgrade, protocol);
}

bool prepare_client_response(ResponseParser& parser, ClientFraming client) {
    auto& response = parser.get();
    const bool chunked = parser.chunked();
    const bool delimited = parser.is_done() || chunked || parser.content_length().has_value();
    erase_hop_by_hop(response);
    if (!delimited) {
        // The upstream ends the body by closing: chunk it for HTTP/1.1
        // clients so their connection stays usable; close for HTTP/1.0.
        if (client.version >= 11) {
            response.chunked(true);
        } else {
            client.keep_alive = false;
        }
    } else if (chunked && client.version < 11) {
        response.chunked(false);
        client.keep_alive = false;
    }
    response.version(client.version);
    response.keep_alive(client.keep_alive);
    return client.keep_alive;
}

} // namespace agent::proxy
