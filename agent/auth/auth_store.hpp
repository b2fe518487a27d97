#pragma once
// The token table and the audit log, in DATA_DIR/state.db beside the
// releases (own connection; WAL lets `deploy-agent token ...` write while an
// agent runs). Every lookup reads the table: a revoke counts at once.

#include <agent/auth/token.hpp>
#include <common/result.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace agent {
namespace sqlite {
class Database;
}
} // namespace agent

namespace agent::auth {

struct TokenRequest {
    std::string name;
    std::string app; // "" = every app
    Scope scope = Scope::read;
    std::string expires_at; // "" = never
};

// Checks what a user asked for: a valid app name or all apps (exactly one),
// a scope name, and an optional lifetime ("30d", "12h"; "" = never expires).
// ErrorKind::usage with the reason.
common::Result<TokenRequest> make_token_request(std::string name, std::string app, bool all_apps,
                                                std::string_view scope, std::string_view expires);

struct CreatedToken {
    TokenInfo info;
    std::string token; // shown once, never stored
};

// One mutating API call, or the failed logins of one address in one minute.
struct AuditEntry {
    std::int64_t id = 0;
    std::string ts;
    // "token:<id>", "unix:<user>", "ssh:<user>", "anonymous", or
    // "address:<ip>" for failed logins (token_name: the last token's prefix)
    std::string who;
    std::string token_name;
    std::string method;
    std::string path; // without the query string
    std::string app;
    std::string release;
    int status = 0;
    std::string result; // "ok" or "error"
    std::string error_code;
    std::int64_t count = 1; // the requests the row stands for (failed logins: > 1)
    std::string command;    // deployctl run: the command's argv as a JSON array
};

struct AuditQuery {
    std::string app;   // "" = all
    std::string since; // RFC 3339, "" = from the start
    int limit = 100;
};

class AuthStore {
  public:
    static common::Result<std::unique_ptr<AuthStore>> open(const std::filesystem::path& db_path);
    ~AuthStore();
    AuthStore(const AuthStore&) = delete;
    AuthStore& operator=(const AuthStore&) = delete;

    common::Result<CreatedToken> create(const TokenRequest& request);
    // Every token, newest first (without hashes).
    common::Result<std::vector<TokenInfo>> list();
    // ErrorKind::not_found for an unknown id; revoking twice keeps the first time.
    common::Result<TokenInfo> revoke(const std::string& id);
    // The token whose id and secret match `token`, or nullopt. Notes its use
    // (at most once a minute, to spare the disk).
    common::Result<std::optional<TokenInfo>> verify(std::string_view token);
    // The same check without the note and on a read-only connection of its
    // own: never waits for a writer or for the other calls' lock (the API's
    // front door asks it for every request head). A database error is "no".
    std::optional<TokenInfo> recognize(std::string_view token);
    common::Result<std::int64_t> count();

    common::Status record(const AuditEntry& entry);
    // Newest first.
    common::Result<std::vector<AuditEntry>> audit(const AuditQuery& query);

  private:
    AuthStore(std::unique_ptr<sqlite::Database> db, std::unique_ptr<sqlite::Database> reader);

    std::unique_ptr<sqlite::Database> m_db;
    std::mutex m_mutex;
    std::unique_ptr<sqlite::Database> m_reader; // recognize() only
    std::mutex m_reader_mutex;
};

} // namespace agent::auth
