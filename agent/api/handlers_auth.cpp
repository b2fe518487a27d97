// /v1/tokens (admin scope) and /v1/audit (read scope; a token limited to one
// app sees that app's rows only). docs/api.md, docs/security.md.

#include <agent/api/errors.hpp>
#include <agent/api/handler_util.hpp>
#include <agent/api/handlers.hpp>
#include <agent/auth/auth_store.hpp>
#include <common/duration.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <chrono>

namespace agent::api {

namespace {

using common::ErrorKind;
using common::make_error;
using nlohmann::json;

json or_null(const std::string& text) {
    return text.empty() ? json(nullptr) : json(text);
}

std::string now() {
    return auth::format_time(std::chrono::system_clock::now());
}

Response unavailable() {
    return error_response(503, "unavailable", "this agent keeps no tokens");
}

std::string string_field(const json& body, const char* name) {
    const auto it = body.find(name);
    return it != body.end() && it->is_string() ? it->get<std::string>() : std::string();
}

common::Result<auth::TokenRequest> token_request(const json& body) {
    if (!body.is_object())
        return make_error(ErrorKind::bad_request, "expected a JSON object");
    for (const char* field : {"name", "app", "scope", "expires"})
        if (body.contains(field) && !body[field].is_string() && !body[field].is_null())
            return make_error(ErrorKind::bad_request,
                              fmt::format("\"{}\" must be a string", field));
    if (body.contains("all_apps") && !body["all_apps"].is_boolean())
        return make_error(ErrorKind::bad_request, "\"all_apps\" must be true or false");
    auto request = auth::make_token_request(
        string_field(body, "name"), string_field(body, "app"), body.value("all_apps", false),
        string_field(body, "scope"), string_field(body, "expires"));
    if (!request)
        return make_error(ErrorKind::bad_request, request.error().message);
    return request;
}

Response create_token(auth::AuthStore& store, const Request& request) {
    auto body = parse_json_body(request, false);
    if (!body)
        return error_response(body.error());
    auto wanted = token_request(*body);
    if (!wanted)
        return error_response(wanted.error());
    auto created = store.create(*wanted);
    if (!created)
        return error_response(created.error());
    auto answer = auth::token_json(created->info, now());
    answer["token"] = created->token;
    return json_response(201, answer);
}

Response list_tokens(auth::AuthStore& store) {
    auto tokens = store.list();
    if (!tokens)
        return error_response(tokens.error());
    const auto at = now();
    json list = json::array();
    for (const auto& t : *tokens)
        list.push_back(auth::token_json(t, at));
    return json_response(200, list);
}

Response revoke_token(auth::AuthStore& store, const Request& request) {
    auto revoked = store.revoke(request.params.at("id"));
    if (!revoked)
        return error_response(revoked.error());
    return json_response(200, auth::token_json(*revoked, now()));
}

common::Result<auth::AuditQuery> audit_query(const Request& request) {
    auth::AuditQuery query;
    if (auto it = request.query.find("limit"); it != request.query.end()) {
        const auto& text = it->second;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), query.limit);
        if (ec != std::errc{} || end != text.data() + text.size() || query.limit < 1 ||
            query.limit > 10000)
            return make_error(ErrorKind::bad_request, "limit must be a number from 1 to 10000");
    }
    if (auto it = request.query.find("since"); it != request.query.end() && !it->second.empty()) {
        // A duration ("1h": that long ago) or an RFC 3339 time.
        if (auto ago = common::parse_duration(it->second))
            query.since = auth::format_time(std::chrono::system_clock::now() - *ago);
        else if (it->second.size() >= 10 && it->second.size() <= 40 &&
                 it->second.find_first_not_of("0123456789-:.TZ") == std::string::npos)
            query.since = it->second;
        else
            return make_error(ErrorKind::bad_request,
                              "since must be a duration (\"1h\") or an RFC 3339 time");
    }
    if (auto it = request.query.find("app"); it != request.query.end())
        query.app = it->second;
    // A token for one app reads that app's rows only.
    const auto& limited = request.peer.token_app;
    if (!limited.empty()) {
        if (!query.app.empty() && query.app != limited)
            return make_error(ErrorKind::auth,
                              fmt::format("token {} may read the audit of app {} only",
                                          request.peer.token_id, limited));
        query.app = limited;
    }
    return query;
}

json audit_object(const auth::AuditEntry& e) {
    json object = {{"id", e.id},       {"ts", e.ts},
            {"who", e.who},     {"token_name", or_null(e.token_name)},
            {"method", e.method}, {"path", e.path},
            {"app", or_null(e.app)}, {"release", or_null(e.release)},
            {"status", e.status}, {"result", e.result},
            {"error", or_null(e.error_code)}, {"count", e.count}};
    if (!e.command.empty()) // deployctl run: the argv it ran
        if (auto argv = json::parse(e.command, nullptr, false); argv.is_array())
            object["command"] = std::move(argv);
    return object;
}

Response read_audit(auth::AuthStore& store, const Request& request) {
    auto query = audit_query(request);
    if (!query)
        return query.error().kind == ErrorKind::auth
                   ? error_response(403, "forbidden", query.error().message)
                   : error_response(query.error());
    auto entries = store.audit(*query);
    if (!entries)
        return error_response(entries.error());
    json list = json::array();
    for (const auto& e : *entries)
        list.push_back(audit_object(e));
    return json_response(200, list);
}

} // namespace

void add_auth_routes(Router& router, ApiContext& context) {
    auto bind = [&context](Response (*fn)(auth::AuthStore&, const Request&)) {
        return [&context, fn](const Request& request) {
            return context.auth ? fn(*context.auth, request) : unavailable();
        };
    };
    router.add("GET", "/v1/tokens",
               bind([](auth::AuthStore& s, const Request&) { return list_tokens(s); }),
               BodyKind::json, Access::admin);
    router.add("POST", "/v1/tokens", bind(create_token), BodyKind::small_json, Access::admin);
    router.add("DELETE", "/v1/tokens/{id}", bind(revoke_token), BodyKind::json, Access::admin);
    router.add("GET", "/v1/audit", bind(read_audit));
}

} // namespace agent::api
