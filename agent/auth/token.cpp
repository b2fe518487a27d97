#include <agent/auth/token.hpp>
#include <common/hash.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <array>
#include <cstdio>
#include <ctime>

namespace agent::auth {

namespace {

constexpr std::string_view k_base64url =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// Unpadded base64url: 32 bytes → 43 characters.
std::string base64url(const unsigned char* data, std::size_t size) {
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < size; i += 3) {
        const unsigned v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
        for (int shift : {18, 12, 6, 0})
            out += k_base64url[(v >> shift) & 63];
    }
    if (size - i == 1) {
        const unsigned v = data[i] << 16;
        out += k_base64url[(v >> 18) & 63];
        out += k_base64url[(v >> 12) & 63];
    } else if (size - i == 2) {
        const unsigned v = (data[i] << 16) | (data[i + 1] << 8);
        for (int shift : {18, 12, 6})
            out += k_base64url[(v >> shift) & 63];
    }
    return out;
}

constexpr std::size_t k_secret_chars = (k_secret_bytes * 4 + 2) / 3; // 43

bool is_hex(std::string_view text) {
    return text.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

std::string scope_phrase(const Need& need) {
    if (need.all_apps)
        return fmt::format("the {} scope on all apps", to_string(need.scope));
    if (need.app.empty())
        return fmt::format("the {} scope", to_string(need.scope));
    return fmt::format("the {} scope on app {}", to_string(need.scope), need.app);
}

} // namespace

const char* to_string(Scope scope) {
    switch (scope) {
    case Scope::read:
        return "read";
    case Scope::deploy:
        return "deploy";
    case Scope::admin:
        return "admin";
    }
    return "read";
}

std::optional<Scope> parse_scope(std::string_view text) {
    for (Scope s : {Scope::read, Scope::deploy, Scope::admin})
        if (text == to_string(s))
            return s;
    return std::nullopt;
}

std::optional<TokenParts> parse_token(std::string_view token) {
    if (token.substr(0, k_token_prefix.size()) != k_token_prefix)
        return std::nullopt;
    token.remove_prefix(k_token_prefix.size());
    if (token.size() != k_id_hex + 1 + k_secret_chars || token[k_id_hex] != '_')
        return std::nullopt;
    TokenParts parts{std::string(token.substr(0, k_id_hex)),
                     std::string(token.substr(k_id_hex + 1))};
    if (!is_hex(parts.id) ||
        parts.secret.find_first_not_of(k_base64url) != std::string::npos)
        return std::nullopt;
    return parts;
}

common::Result<TokenParts> generate_token() {
    std::array<unsigned char, k_id_hex / 2> id{};
    std::array<unsigned char, k_secret_bytes> secret{};
    if (RAND_bytes(id.data(), static_cast<int>(id.size())) != 1 ||
        RAND_bytes(secret.data(), static_cast<int>(secret.size())) != 1)
        return common::make_error(common::ErrorKind::internal,
                                  "OpenSSL could not produce random bytes for a token");
    TokenParts parts;
    parts.id = common::to_hex({reinterpret_cast<const char*>(id.data()), id.size()});
    parts.secret = base64url(secret.data(), secret.size());
    OPENSSL_cleanse(secret.data(), secret.size());
    return parts;
}

std::string format_token(const TokenParts& parts) {
    return std::string(k_token_prefix) + parts.id + "_" + parts.secret;
}

std::string hash_secret(std::string_view secret) {
    return common::sha256_hex(secret);
}

bool secret_matches(std::string_view secret, std::string_view stored_hash) {
    const auto hash = hash_secret(secret);
    return hash.size() == stored_hash.size() &&
           CRYPTO_memcmp(hash.data(), stored_hash.data(), hash.size()) == 0;
}

// As common::now_rfc3339, for any instant.
std::string format_time(std::chrono::system_clock::time_point when) {
    using namespace std::chrono;
    const auto t = system_clock::to_time_t(when);
    const auto ms = duration_cast<milliseconds>(when.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buffer[40];
    const std::size_t n = std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buffer + n, sizeof buffer - n, ".%03dZ", static_cast<int>(ms));
    return buffer;
}

std::string_view token_state(const TokenInfo& token, std::string_view now) {
    if (!token.revoked_at.empty())
        return "revoked";
    if (!token.expires_at.empty() && token.expires_at <= now)
        return "expired";
    return "active";
}

nlohmann::json token_json(const TokenInfo& t, std::string_view now) {
    auto or_null = [](const std::string& text) {
        return text.empty() ? nlohmann::json(nullptr) : nlohmann::json(text);
    };
    return {{"id", t.id},
            {"name", t.name},
            {"app", or_null(t.app)},
            {"scope", to_string(t.scope)},
            {"created_at", t.created_at},
            {"expires_at", or_null(t.expires_at)},
            {"revoked_at", or_null(t.revoked_at)},
            {"last_used_at", or_null(t.last_used_at)},
            {"state", token_state(t, now)}};
}

Decision decide(const TokenInfo& token, const Need& need, std::string_view now) {
    const auto state = token_state(token, now);
    if (state != "active")
        return {Verdict::unauthorized,
                fmt::format("token {} {} at {}", token.id,
                            state == "revoked" ? "was revoked" : "expired",
                            state == "revoked" ? token.revoked_at : token.expires_at)};
    const bool scope_ok = token.scope >= need.scope;
    const bool app_ok = token.app.empty() || (!need.all_apps && (need.app.empty() ||
                                                                 need.app == token.app));
    if (scope_ok && app_ok)
        return {Verdict::allow, {}};
    const std::string has =
        token.app.empty() ? fmt::format("{} on all apps", to_string(token.scope))
                          : fmt::format("{} on app {}", to_string(token.scope), token.app);
    return {Verdict::forbidden,
            fmt::format("this needs {}; token {} has {}", scope_phrase(need), token.id, has)};
}

} // namespace agent::auth
