#pragma once
// Bearer tokens of the agent API (docs/security.md): their format, how their
// secret is hashed and checked, and the decision table of scopes and apps.
// Pure functions; the table of tokens lives in auth_store.hpp.
//
// A token reads "dpa_<id>_<secret>": <id> is 12 hex digits (public, names the
// token in `token ls` and in the audit log), <secret> is 32 random bytes in
// unpadded base64url. The agent keeps only SHA-256(secret).

#include <common/result.hpp>

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace agent::auth {

// Each scope includes the ones before it.
enum class Scope { read = 0, deploy = 1, admin = 2 };

const char* to_string(Scope scope);
std::optional<Scope> parse_scope(std::string_view text);

inline constexpr std::string_view k_token_prefix = "dpa_";
inline constexpr std::size_t k_id_hex = 12;
inline constexpr std::size_t k_secret_bytes = 32;

struct TokenParts {
    std::string id;
    std::string secret;
};

// Splits a token into id and secret; nullopt when it does not have the format.
std::optional<TokenParts> parse_token(std::string_view token);
// A fresh id and secret from OpenSSL's RAND_bytes.
common::Result<TokenParts> generate_token();
std::string format_token(const TokenParts& parts);
// Lower-case hex SHA-256 of the secret: what the table stores.
std::string hash_secret(std::string_view secret);
// Whether `secret` hashes to `stored_hash`, compared in constant time.
bool secret_matches(std::string_view secret, std::string_view stored_hash);

// One row of the token table (never holds the secret).
struct TokenInfo {
    std::string id;
    std::string name;
    std::string app; // "" = every app
    Scope scope = Scope::read;
    std::string created_at;
    std::string expires_at; // "" = never; RFC 3339 UTC like created_at
    std::string revoked_at; // "" = not revoked
    std::string last_used_at;
};

// "2026-11-23T09:00:00.000Z" for a point in time (the format of now_rfc3339,
// so that these strings compare in time order).
std::string format_time(std::chrono::system_clock::time_point when);

// "active", "expired" or "revoked" at `now` (format_time).
std::string_view token_state(const TokenInfo& token, std::string_view now);

// The token as the API and `token ls --json` show it (docs/api.md): times
// as strings or null, app null for all apps, and its state.
nlohmann::json token_json(const TokenInfo& token, std::string_view now);

// What a route asks of the caller: a scope, on one app or (app empty) on any
// app; admin routes (all_apps) need a token for every app.
struct Need {
    Scope scope = Scope::read;
    std::string app;
    bool all_apps = false;
};

enum class Verdict { allow, unauthorized, forbidden };

struct Decision {
    Verdict verdict = Verdict::unauthorized;
    std::string message; // why, for the error answer; empty when allowed
};

// The decision for a known token (already matched by its secret) at `now`
// (format_time): revoked or expired → unauthorized; too low a scope or
// another app → forbidden, naming what was needed.
Decision decide(const TokenInfo& token, const Need& need, std::string_view now);

} // namespace agent::auth
