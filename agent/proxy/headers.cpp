#include <agent/proxy/headers.hpp>
#include <common/ascii.hpp>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <fmt/format.h>

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

// Drops a response's fixed hop-by-hop fields and those its (first) Connection field names
// (a request's go as its head is written: upstream_request_head).
void erase_hop_by_hop(http::response_header<>& message) {
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

void append_field(std::string_view name, std::string_view value, std::string& out) {
    out.append(name);
    out.append(": ");
    out.append(value);
    out.append("\r\n");
}

void append_fields(const http::fields& fields, std::string& out) {
    for (const auto& field : fields)
        append_field(field.name_string(), field.value(), out);
    out.append("\r\n");
}

bool is_forwarded_for(const http::fields::value_type& field) {
    return field.name() == http::field::unknown &&
           common::ascii_iequals(field.name_string(), k_forwarded_for);
}

} // namespace

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

namespace {

// A field the client sent that does not go upstream as it is.
bool replaced_upstream(const http::fields::value_type& field, bool own_request_id) {
    if (std::find(k_hop_by_hop.begin(), k_hop_by_hop.end(), field.name()) != k_hop_by_hop.end())
        return true;
    switch (field.name()) {
    case http::field::expect: // answered by the proxy itself
    case http::field::transfer_encoding:
    case http::field::content_length:
        return true;
    case http::field::unknown: {
        const auto name = field.name_string();
        return is_forwarded_for(field) || common::ascii_iequals(name, "X-Forwarded-Proto") ||
               common::ascii_iequals(name, "X-Forwarded-Host") ||
               common::ascii_iequals(name, k_probe_field) ||
               (own_request_id && common::ascii_iequals(name, k_request_id_field));
    }
    default:
        return false;
    }
}

} // namespace

void upstream_request_head(const http::request_header<>& request, const UpstreamRequest& how,
                           std::string& out) {
    out.clear();
    out.append(request.method_string());
    out.push_back(' ');
    out.append(request.target());
    out.append(" HTTP/1.1\r\n");
    // The fields the Connection fields name (each is hop-by-hop; rarely any but "keep-alive"
    // or "close", which name no field): a first look at the fields, in the order they came.
    constexpr std::size_t k_max_named = 16;
    std::array<std::string_view, k_max_named> named{};
    std::size_t named_count = 0;
    bool more_named = false; // past the first 16: each field is checked against every token
    for (const auto& field : request)
        if (field.name() == http::field::connection)
            for (auto token : http::token_list(field.value())) {
                if (named_count < k_max_named)
                    named[named_count++] = std::string_view(token.data(), token.size());
                else
                    more_named = true;
            }
    auto is_named = [&](std::string_view name) {
        for (std::size_t i = 0; i < named_count; ++i)
            if (common::ascii_iequals(name, named[i]))
                return true;
        if (more_named)
            for (const auto& field : request)
                if (field.name() == http::field::connection)
                    for (auto token : http::token_list(field.value()))
                        if (common::ascii_iequals(name,
                                                  std::string_view(token.data(), token.size())))
                            return true;
        return false;
    };
    const bool own_id = !how.request_id.empty();
    for (const auto& field : request) {
        if (replaced_upstream(field, own_id) || (named_count > 0 && is_named(field.name_string())))
            continue;
        append_field(field.name_string(), field.value(), out);
    }
    if (own_id)
        append_field(k_request_id_field, how.request_id, out);
    if (how.chunked) {
        append_field("Transfer-Encoding", "chunked", out);
    } else if (how.content_length > 0 || request.method() == http::verb::post ||
               request.method() == http::verb::put || request.method() == http::verb::patch) {
        const fmt::format_int length(how.content_length);
        append_field("Content-Length", std::string_view(length.data(), length.size()), out);
    }
    // The client's X-Forwarded-For fields, as one list, and this client.
    out.append(k_forwarded_for).append(": ");
    for (const auto& field : request)
        if (is_forwarded_for(field) && !field.value().empty())
            out.append(field.value()).append(", ");
    out.append(how.client_ip).append("\r\n");
    append_field("X-Forwarded-Proto", how.proto, out);
    append_field("X-Forwarded-Host", request[http::field::host], out);
    if (!how.upgrade.empty()) {
        append_field("Connection", "upgrade", out);
        append_field("Upgrade", how.upgrade, out);
    }
    out.append("\r\n");
}

std::string upgrade_protocol(const http::request_header<>& request) {
    return upgrade_protocol(request.version(), request[http::field::connection],
                            request[http::field::upgrade]);
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
