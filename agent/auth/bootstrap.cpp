#include <agent/auth/bootstrap.hpp>
#include <common/fs.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>

namespace agent::auth {

namespace {

int fail(const common::Error& error) {
    std::fprintf(stderr, "deploy-agent: %s\n", error.message.c_str());
    const bool usage =
        error.kind == common::ErrorKind::usage || error.kind == common::ErrorKind::not_found;
    return usage ? 2 : 1;
}

common::Result<std::unique_ptr<AuthStore>> open_store(const std::string& data_dir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(data_dir, ec))
        return common::make_error(
            common::ErrorKind::usage,
            fmt::format("{} is not a data directory (give the agent's --data-dir)", data_dir));
    return AuthStore::open(std::filesystem::path(data_dir) / "state.db");
}

std::string or_dash(const std::string& text) {
    return text.empty() ? "-" : text;
}

std::string app_label(const TokenInfo& t) {
    return t.app.empty() ? "(all apps)" : t.app;
}

} // namespace

common::Result<bool> ensure_admin_token(AuthStore& store, const std::filesystem::path& path) {
    TRY_ASSIGN(auto count, store.count());
    if (count > 0)
        return false;
    TRY_ASSIGN(auto created,
               store.create(TokenRequest{"admin (first start)", {}, Scope::admin, {}}));
    TRY(common::atomic_write_file(path, created.token + "\n", 0600));
    return true;
}

int token_create(const TokenCommand& c) {
    auto request = make_token_request(c.name, c.app, c.all_apps, c.scope, c.expires);
    if (!request)
        return fail(request.error());
    auto store = open_store(c.data_dir);
    if (!store)
        return fail(store.error());
    auto created = (*store)->create(*request);
    if (!created)
        return fail(created.error());
    const auto& t = created->info;
    std::fprintf(stderr, "created token %s: %s on %s%s%s (shown once; keep it secret)\n",
                 t.id.c_str(), to_string(t.scope), app_label(t).c_str(),
                 t.expires_at.empty() ? "" : ", expires ", t.expires_at.c_str());
    std::printf("%s\n", created->token.c_str());
    return 0;
}

int token_list(const TokenCommand& c) {
    auto store = open_store(c.data_dir);
    if (!store)
        return fail(store.error());
    auto tokens = (*store)->list();
    if (!tokens)
        return fail(tokens.error());
    const auto now = format_time(std::chrono::system_clock::now());
    if (c.json) {
        for (const auto& t : *tokens)
            std::printf("%s\n", token_json(t, now).dump().c_str());
        return 0;
    }
    std::printf("%-12s  %-7s  %-6s  %-16s  %-24s  %-24s  %s\n", "ID", "STATE", "SCOPE", "APP",
                "CREATED", "EXPIRES", "NAME");
    for (const auto& t : *tokens)
        std::printf("%-12s  %-7s  %-6s  %-16s  %-24s  %-24s  %s\n", t.id.c_str(),
                    std::string(token_state(t, now)).c_str(), to_string(t.scope),
                    app_label(t).c_str(), t.created_at.c_str(), or_dash(t.expires_at).c_str(),
                    t.name.c_str());
    return 0;
}

int token_revoke(const TokenCommand& c) {
    auto store = open_store(c.data_dir);
    if (!store)
        return fail(store.error());
    auto revoked = (*store)->revoke(c.id);
    if (!revoked)
        return fail(revoked.error());
    std::fprintf(stderr, "token %s revoked at %s\n", revoked->id.c_str(),
                 revoked->revoked_at.c_str());
    return 0;
}

} // namespace agent::auth
