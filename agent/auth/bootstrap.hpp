#pragma once
// The first admin token, and `deploy-agent token create|ls|revoke`, which
// work on DATA_DIR/state.db directly (also while an agent runs).

#include <agent/auth/auth_store.hpp>
#include <common/result.hpp>

#include <filesystem>
#include <string>

namespace agent::auth {

// When no token exists yet, creates an admin token for all apps and writes it
// to `path` (0600, atomically). Returns whether it did.
common::Result<bool> ensure_admin_token(AuthStore& store, const std::filesystem::path& path);

struct TokenCommand {
    std::string data_dir = "/var/lib/deploy-agent";
    std::string app;
    bool all_apps = false;
    std::string scope;
    std::string expires;
    std::string name;
    std::string id; // revoke
    bool json = false;
};

// Each prints what it did and returns the process exit code. create prints
// the token alone on stdout (for `T=$(deploy-agent token create ...)`).
int token_create(const TokenCommand& command);
int token_list(const TokenCommand& command);
int token_revoke(const TokenCommand& command);

} // namespace agent::auth
