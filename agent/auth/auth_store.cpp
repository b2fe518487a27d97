#include <agent/auth/auth_store.hpp>
#include <agent/store/schema.hpp>
#include <agent/store/sqlite.hpp>
#include <common/config.hpp>
#include <common/duration.hpp>

#include <fmt/format.h>

#include <chrono>

namespace agent::auth {

using common::ErrorKind;
using common::make_error;

namespace {

constexpr std::string_view k_token_columns =
    "id, name, app, scope, created_at, expires_at, revoked_at, last_used_at";

TokenInfo read_token(const sqlite::Statement& s) {
    TokenInfo info;
    info.id = s.text(0);
    info.name = s.text(1);
    info.app = s.text(2);
    info.scope = parse_scope(s.text(3)).value_or(Scope::read);
    info.created_at = s.text(4);
    info.expires_at = s.text(5);
    info.revoked_at = s.text(6);
    info.last_used_at = s.text(7);
    return info;
}

std::string now() {
    return format_time(std::chrono::system_clock::now());
}

// Whether `then` (format_time) is unset or more than a minute ago.
bool a_minute_since(const std::string& then) {
    return then.empty() ||
           then < format_time(std::chrono::system_clock::now() - std::chrono::minutes(1));
}

} // namespace

common::Result<TokenRequest> make_token_request(std::string name, std::string app, bool all_apps,
                                                std::string_view scope, std::string_view expires) {
    if (all_apps == !app.empty())
        return make_error(ErrorKind::usage, "give either an app or all apps for the token");
    if (!all_apps && !common::is_valid_app_name(app))
        return make_error(
            ErrorKind::usage,
            fmt::format("invalid app name \"{:.80}\" (expected [a-z][a-z0-9-]*)", app));
    const auto parsed = parse_scope(scope);
    if (!parsed)
        return make_error(
            ErrorKind::usage,
            fmt::format("invalid scope \"{:.40}\": expected read, deploy or admin", scope));
    if (name.size() > 200)
        return make_error(ErrorKind::usage, "a token name is at most 200 bytes");
    TokenRequest request{std::move(name), std::move(app), *parsed, {}};
    if (!expires.empty()) {
        auto lifetime = common::parse_duration(expires);
        if (!lifetime || lifetime->count() <= 0)
            return make_error(
                ErrorKind::usage,
                fmt::format("invalid expiry \"{:.40}\" (expected e.g. \"30d\", \"12h\")", expires));
        request.expires_at = format_time(std::chrono::system_clock::now() + *lifetime);
    }
    return request;
}

AuthStore::AuthStore(std::unique_ptr<sqlite::Database> db,
                     std::unique_ptr<sqlite::Database> reader)
    : m_db(std::move(db)), m_reader(std::move(reader)) {}
AuthStore::~AuthStore() = default;

common::Result<std::unique_ptr<AuthStore>> AuthStore::open(const std::filesystem::path& db_path) {
    TRY_ASSIGN(auto db, sqlite::Database::open(db_path));
    TRY(schema::migrate(*db));
    TRY_ASSIGN(auto reader, sqlite::Database::open(db_path));
    return std::unique_ptr<AuthStore>(new AuthStore(std::move(db), std::move(reader)));
}

common::Result<CreatedToken> AuthStore::create(const TokenRequest& request) {
    std::lock_guard lock(m_mutex);
    for (int attempt = 0; attempt < 3; ++attempt) {
        TRY_ASSIGN(auto parts, generate_token());
        CreatedToken created;
        created.info = TokenInfo{parts.id, request.name,       request.app, request.scope,
                                 now(),    request.expires_at, {},          {}};
        TRY_ASSIGN(auto insert,
                   m_db->prepare("INSERT OR IGNORE INTO api_tokens (id, name, app, scope, "
                                 "secret_hash, created_at, expires_at) VALUES (?,?,?,?,?,?,?)"));
        insert.bind(created.info.id)
            .bind(created.info.name)
            .bind(created.info.app)
            .bind(std::string_view(to_string(created.info.scope)))
            .bind(hash_secret(parts.secret))
            .bind(created.info.created_at)
            .bind(created.info.expires_at);
        TRY(insert.run());
        if (m_db->changes() == 1) {
            created.token = format_token(parts);
            return created;
        }
    }
    return make_error(ErrorKind::internal, "could not find an unused token id");
}

common::Result<std::vector<TokenInfo>> AuthStore::list() {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto query,
               m_db->prepare(fmt::format("SELECT {} FROM api_tokens ORDER BY created_at DESC, id",
                                         k_token_columns)));
    std::vector<TokenInfo> tokens;
    TRY(query.each([&](const sqlite::Statement& row) { tokens.push_back(read_token(row)); }));
    return tokens;
}

common::Result<TokenInfo> AuthStore::revoke(const std::string& id) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(
        auto update,
        m_db->prepare("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at = ''"));
    update.bind(now()).bind(id);
    TRY(update.run());
    TRY_ASSIGN(auto query, m_db->prepare(fmt::format("SELECT {} FROM api_tokens WHERE id = ?",
                                                     k_token_columns)));
    query.bind(id);
    TRY_ASSIGN(const bool found, query.step());
    if (!found)
        return make_error(ErrorKind::not_found, fmt::format("no token with id {}", id));
    return read_token(query);
}

common::Result<std::optional<TokenInfo>> AuthStore::verify(std::string_view token) {
    const auto parts = parse_token(token);
    if (!parts)
        return std::optional<TokenInfo>{};
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto query,
               m_db->prepare(fmt::format("SELECT {}, secret_hash FROM api_tokens WHERE id = ?",
                                         k_token_columns)));
    query.bind(parts->id);
    TRY_ASSIGN(const bool found, query.step());
    if (!found || !secret_matches(parts->secret, query.text(8)))
        return std::optional<TokenInfo>{};
    auto info = read_token(query);
    if (a_minute_since(info.last_used_at)) {
        const auto current = now();
        auto touch = m_db->prepare("UPDATE api_tokens SET last_used_at = ? WHERE id = ?");
        if (touch)
            (void)touch->bind(current).bind(info.id).run(); // a busy database skips the note
        info.last_used_at = current;
    }
    return std::optional<TokenInfo>{std::move(info)};
}

std::optional<TokenInfo> AuthStore::recognize(std::string_view token) {
    const auto parts = parse_token(token);
    if (!parts)
        return std::nullopt;
    std::lock_guard lock(m_reader_mutex);
    auto query = m_reader->prepare(
        fmt::format("SELECT {}, secret_hash FROM api_tokens WHERE id = ?", k_token_columns));
    if (!query)
        return std::nullopt;
    query->bind(parts->id);
    const auto found = query->step();
    if (!found || !*found || !secret_matches(parts->secret, query->text(8)))
        return std::nullopt;
    return read_token(*query);
}

common::Result<std::int64_t> AuthStore::count() {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto query, m_db->prepare("SELECT COUNT(*) FROM api_tokens"));
    TRY_ASSIGN(const bool found, query.step());
    return found ? query.integer(0) : 0;
}

} // namespace agent::auth
