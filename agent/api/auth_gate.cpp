#include <agent/api/auth_gate.hpp>
#include <agent/api/errors.hpp>
#include <agent/auth/auth_store.hpp>
#include <agent/auth/login_throttle.hpp>
#include <common/log.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <strings.h>

namespace agent::api {

namespace {

using auth::Scope;

Response unauthorized(const std::string& message) {
    auto response = error_response(401, "unauthorized", message);
    response.headers.emplace_back("WWW-Authenticate", R"(Bearer realm="deploy-agent")");
    return response;
}

// The token of "Bearer <token>" (the scheme in any case), or "".
std::string_view bearer_token(std::string_view authorization) {
    constexpr std::string_view k_scheme = "bearer ";
    if (authorization.size() <= k_scheme.size() ||
        ::strncasecmp(authorization.data(), k_scheme.data(), k_scheme.size()) != 0)
        return {};
    authorization.remove_prefix(k_scheme.size());
    while (!authorization.empty() && authorization.front() == ' ')
        authorization.remove_prefix(1);
    while (!authorization.empty() && authorization.back() == ' ')
        authorization.remove_suffix(1);
    return authorization;
}

std::string param(const Params& params, const char* name) {
    const auto it = params.find(name);
    return it == params.end() ? std::string() : it->second;
}

// The release a mutating call touched: the path's, else the answer's.
std::string release_of(const Request& request, const nlohmann::json& body) {
    if (request.params.count("app") && request.params.count("id"))
        return param(request.params, "id");
    if (body.is_object() && body.contains("release") && body["release"].is_string())
        return body["release"].get<std::string>();
    return {};
}

bool is_read_only(const std::string& method) {
    return method == "GET" || method == "HEAD";
}

} // namespace

auth::Need need_for(const std::string& method, Access access, const Params& params) {
    if (access == Access::admin)
        return {Scope::admin, {}, true};
    return {is_read_only(method) ? Scope::read : Scope::deploy, param(params, "app"), false};
}

std::string who(const Peer& peer) {
    if (peer.unix_socket)
        return (peer.via_ssh ? "ssh:" : "unix:") + peer.user;
    if (!peer.token_id.empty())
        return "token:" + peer.token_id;
    return "anonymous";
}

auth::AuditEntry failed_logins_entry(const auth::FailedLogins& s) {
    auth::AuditEntry entry;
    entry.who = "address:" + s.address;
    if (!s.token_prefix.empty())
        entry.token_name = s.token_prefix + "…";
    entry.method = s.method; // the last refused request's
    entry.path = s.path;
    entry.status = s.status;
    entry.result = "error";
    entry.error_code = s.status == 429 ? "too_many_failed_logins" : "unauthorized";
    entry.count = s.count;
    return entry;
}

void AuthGate::report(const auth::FailedLogins& summary) {
    common::log_warn(auth::failed_logins_line(summary));
    if (auto ok = m_store.record(failed_logins_entry(summary)); !ok)
        common::log_error("cannot write the audit log: " + ok.error().message);
}

void AuthGate::report_due() {
    if (m_throttle)
        for (const auto& summary : m_throttle->due())
            report(summary);
}

void AuthGate::report_all() {
    if (m_throttle)
        for (const auto& summary : m_throttle->flush())
            report(summary);
}

// A failed token check: counted for the client's address (the audit row and
// the log line come once a minute), and maybe the start of its block.
Response AuthGate::refuse(Request& request, std::string_view token, Response response) {
    request.peer.login_refused = true;
    if (m_throttle) {
        auto due = m_throttle->failed({request.peer.address, auth::token_prefix(token),
                                       request.method, request.path, response.status});
        if (due)
            report(*due);
    }
    return response;
}

std::optional<Response> AuthGate::admit(Request& request, const Route* route,
                                        std::string_view authorization) {
    if (route && route->access == Access::open)
        return std::nullopt;
    if (request.peer.unix_socket)
        return std::nullopt; // the socket's file permissions guard it
    const auto token = bearer_token(authorization);
    // Before the token is looked at: a valid one is refused too until the block ends.
    if (auto wait = m_throttle ? m_throttle->blocked(request.peer.address) : std::nullopt) {
        auto response = error_response(
            429, "too_many_failed_logins",
            fmt::format("too many failed logins from {}: the agent refuses this address for {} s "
                        "more, whatever token it sends (Retry-After); check the token the client "
                        "sends, or ask the agent's operator (restarting the agent lifts every "
                        "block)",
                        request.peer.address, wait->count()));
        response.headers.emplace_back("Retry-After", std::to_string(wait->count()));
        return refuse(request, token, std::move(response));
    }
    if (token.empty())
        return refuse(request, token,
                      unauthorized("a bearer token is required (Authorization: Bearer <token>)"));
    if (!auth::parse_token(token))
        return refuse(request, token, unauthorized("malformed token: expected dpa_<id>_<secret>"));
    auto found = m_store.verify(token);
    if (!found) {
        common::log_error("cannot check a token: " + found.error().message);
        return error_response(500, "internal", "cannot check the token: " + found.error().message);
    }
    if (!*found)
        return refuse(request, token, unauthorized("unknown token (wrong secret, or deleted)"));
    const auto& info = **found;
    const auto need = route ? need_for(request.method, route->access, request.params)
                            : auth::Need{Scope::read, {}, false};
    const auto decision =
        auth::decide(info, need, auth::format_time(std::chrono::system_clock::now()));
    // The secret matched: the audit names the token, revoked or expired too.
    request.peer.token_id = info.id;
    request.peer.token_name = info.name;
    request.peer.token_app = info.app;
    if (decision.verdict == auth::Verdict::unauthorized)
        return refuse(request, token, unauthorized(decision.message)); // revoked, expired
    if (decision.verdict == auth::Verdict::forbidden)
        return error_response(403, "forbidden", decision.message);
    return std::nullopt;
}

bool AuthGate::authenticates(std::string_view authorization) {
    const auto token = bearer_token(authorization);
    if (token.empty() || !auth::parse_token(token))
        return false;
    const auto found = m_store.recognize(token);
    if (!found)
        return false;
    const auto decision = auth::decide(*found, auth::Need{Scope::read, {}, false},
                                       auth::format_time(std::chrono::system_clock::now()));
    return decision.verdict != auth::Verdict::unauthorized;
}

void AuthGate::record(const Request& request, const Response& response) {
    if (is_read_only(request.method) || request.peer.login_refused)
        return; // failed logins: one row per address and minute (report)
    nlohmann::json body;
    if (!response.body.empty()) // a stream's body is not sent: it names the release
        body = nlohmann::json::parse(response.body, nullptr, false);
    auth::AuditEntry entry;
    entry.who = who(request.peer);
    entry.token_name = request.peer.token_name;
    entry.method = request.method;
    entry.path = request.path; // never the query string nor the body: they may hold secrets
    entry.app = param(request.params, "app");
    entry.status = response.status;
    entry.command = response.audit_detail;
    entry.result = response.status < 400 ? "ok" : "error";
    if (response.status < 400)
        entry.release = release_of(request, body);
    else if (body.is_object() && body.contains("error") && body["error"].is_object())
        entry.error_code = body["error"].value("code", "");
    if (auto ok = m_store.record(entry); !ok)
        common::log_error("cannot write the audit log: " + ok.error().message);
}

} // namespace agent::api
