// agent/auth: token format, hashing and verification, the scope/app decision
// table, expiry, the token table and the audit log; agent/api/auth_gate.
#include "temp_dir.hpp"

#include <agent/api/auth_gate.hpp>
#include <agent/auth/auth_store.hpp>
#include <agent/auth/bootstrap.hpp>
#include <agent/auth/token.hpp>
#include <agent/store/sqlite.hpp>
#include <common/fs.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <set>
#include <sys/stat.h>

using namespace agent::auth;

namespace {

std::string now() {
    return format_time(std::chrono::system_clock::now());
}

TokenInfo token(Scope scope, std::string app = {}) {
    TokenInfo info;
    info.id = "0123456789ab";
    info.scope = scope;
    info.app = std::move(app);
    return info;
}

} // namespace

TEST_CASE("generated tokens parse back, and malformed ones do not") {
    auto parts = generate_token();
    REQUIRE(parts);
    const auto text = format_token(*parts);
    CHECK(text.rfind("dpa_", 0) == 0);
    CHECK(text.size() == 4 + 12 + 1 + 43);
    auto parsed = parse_token(text);
    REQUIRE(parsed);
    CHECK(parsed->id == parts->id);
    CHECK(parsed->secret == parts->secret);

    SUBCASE("every token is different") {
        std::set<std::string> seen;
        for (int i = 0; i < 50; ++i)
            seen.insert(format_token(*generate_token()));
        CHECK(seen.size() == 50);
    }
    SUBCASE("malformed") {
        CHECK_FALSE(parse_token(""));
        CHECK_FALSE(parse_token("dpa_"));
        CHECK_FALSE(parse_token("xyz_" + text.substr(4)));
        CHECK_FALSE(parse_token(text.substr(0, text.size() - 1)));       // short secret
        CHECK_FALSE(parse_token(text + "A"));                            // long secret
        CHECK_FALSE(parse_token("dpa_0123456789aG_" + parts->secret));   // id not hex
        CHECK_FALSE(parse_token("dpa_0123456789ab_" + std::string(42, 'a') + "=")); // not base64url
        CHECK_FALSE(parse_token("dpa_0123456789ab-" + parts->secret));
    }
}

TEST_CASE("a secret is checked against its SHA-256, and only the right one matches") {
    const std::string secret = "s3cr3t-but-high-entropy-in-real-life";
    const auto hash = hash_secret(secret);
    CHECK(hash.size() == 64);
    CHECK(hash != secret);
    CHECK(secret_matches(secret, hash));
    CHECK_FALSE(secret_matches(secret + "x", hash));
    CHECK_FALSE(secret_matches("", hash));
    CHECK_FALSE(secret_matches(secret, hash.substr(1)));
}

TEST_CASE("scopes parse and order: read < deploy < admin") {
    CHECK(parse_scope("read") == Scope::read);
    CHECK(parse_scope("deploy") == Scope::deploy);
    CHECK(parse_scope("admin") == Scope::admin);
    CHECK_FALSE(parse_scope("root"));
    CHECK_FALSE(parse_scope("Admin"));
    CHECK(Scope::read < Scope::deploy);
    CHECK(Scope::deploy < Scope::admin);
}

TEST_CASE("the scope and app decision table") {
    const auto at = now();
    const Need read_a{Scope::read, "a", false};
    const Need deploy_a{Scope::deploy, "a", false};
    const Need deploy_any{Scope::deploy, "", false}; // e.g. blobs
    const Need admin_all{Scope::admin, "", true};

    struct Row {
        TokenInfo token;
        Need need;
        Verdict verdict;
    };
    const Row rows[] = {
        {token(Scope::read, "a"), read_a, Verdict::allow},
        {token(Scope::read, "a"), deploy_a, Verdict::forbidden},
        {token(Scope::deploy, "a"), deploy_a, Verdict::allow},
        {token(Scope::deploy, "a"), read_a, Verdict::allow},
        {token(Scope::deploy, "b"), deploy_a, Verdict::forbidden},
        {token(Scope::deploy, "b"), read_a, Verdict::forbidden},
        {token(Scope::deploy, "b"), deploy_any, Verdict::allow},
        {token(Scope::read, "b"), deploy_any, Verdict::forbidden},
        {token(Scope::deploy), deploy_a, Verdict::allow},
        {token(Scope::admin, "a"), deploy_a, Verdict::allow},
        {token(Scope::admin, "a"), admin_all, Verdict::forbidden},
        {token(Scope::deploy), admin_all, Verdict::forbidden},
        {token(Scope::admin), admin_all, Verdict::allow},
        {token(Scope::admin), deploy_a, Verdict::allow},
    };
    for (const auto& row : rows) {
        CAPTURE(to_string(row.token.scope));
        CAPTURE(row.token.app);
        CAPTURE(to_string(row.need.scope));
        CAPTURE(row.need.app);
        const auto decision = decide(row.token, row.need, at);
        CHECK(decision.verdict == row.verdict);
        CHECK(decision.message.empty() == (row.verdict == Verdict::allow));
    }

    SUBCASE("a refusal says what was needed and what the token has") {
        auto d = decide(token(Scope::read, "a"), deploy_a, at);
        CHECK(d.message.find("deploy scope on app a") != std::string::npos);
        CHECK(d.message.find("has read on app a") != std::string::npos);
        d = decide(token(Scope::deploy, "b"), deploy_a, at);
        CHECK(d.message.find("app a") != std::string::npos);
        CHECK(d.message.find("app b") != std::string::npos);
    }
}

TEST_CASE("routes ask for read on GET, deploy otherwise, admin when marked") {
    using agent::api::Access;
    using agent::api::need_for;
    auto need = need_for("GET", Access::by_method, {{"app", "web"}});
    CHECK(need.scope == Scope::read);
    CHECK(need.app == "web");
    CHECK_FALSE(need.all_apps);
    need = need_for("POST", Access::by_method, {{"app", "web"}});
    CHECK(need.scope == Scope::deploy);
    need = need_for("DELETE", Access::by_method, {{"app", "web"}, {"id", "v2"}});
    CHECK(need.scope == Scope::deploy);
    CHECK(need.app == "web");
    need = need_for("PUT", Access::by_method, {{"digest", "abc"}});
    CHECK(need.scope == Scope::deploy);
    CHECK(need.app.empty());
    need = need_for("GET", Access::admin, {});
    CHECK(need.scope == Scope::admin);
    CHECK(need.all_apps);
}

TEST_CASE("expired and revoked tokens are refused as unauthorized") {
    const auto at = now();
    auto t = token(Scope::admin);
    t.expires_at = format_time(std::chrono::system_clock::now() - std::chrono::seconds(1));
    auto d = decide(t, {Scope::read, "a", false}, at);
    CHECK(d.verdict == Verdict::unauthorized);
    CHECK(d.message.find("expired") != std::string::npos);
    CHECK(token_state(t, at) == "expired");

    t.expires_at = format_time(std::chrono::system_clock::now() + std::chrono::hours(1));
    CHECK(decide(t, {Scope::read, "a", false}, at).verdict == Verdict::allow);
    CHECK(token_state(t, at) == "active");

    t.revoked_at = at;
    d = decide(t, {Scope::read, "a", false}, at);
    CHECK(d.verdict == Verdict::unauthorized);
    CHECK(d.message.find("revoked") != std::string::npos);
    CHECK(token_state(t, at) == "revoked");
}

TEST_CASE("token requests are checked") {
    CHECK(make_token_request("ci", "web", false, "deploy", ""));
    CHECK(make_token_request("", "", true, "admin", ""));
    CHECK_FALSE(make_token_request("", "", false, "read", ""));     // neither
    CHECK_FALSE(make_token_request("", "web", true, "read", ""));   // both
    CHECK_FALSE(make_token_request("", "Web!", false, "read", "")); // bad app
    CHECK_FALSE(make_token_request("", "web", false, "root", ""));
    CHECK_FALSE(make_token_request("", "web", false, "read", "soon"));
    CHECK_FALSE(make_token_request("", "web", false, "read", "0s"));
    auto request = make_token_request("", "web", false, "read", "30d");
    REQUIRE(request);
    const auto in_29_days =
        format_time(std::chrono::system_clock::now() + std::chrono::hours(24 * 29));
    const auto in_31_days =
        format_time(std::chrono::system_clock::now() + std::chrono::hours(24 * 31));
    CHECK(request->expires_at > in_29_days);
    CHECK(request->expires_at < in_31_days);
}

TEST_CASE("the token table stores hashes, verifies, revokes at once and counts") {
    test::TempDir dir;
    auto store = AuthStore::open(dir.path() / "state.db");
    REQUIRE(store);
    CHECK(*(*store)->count() == 0);
    auto created = (*store)->create(TokenRequest{"ci", "web", Scope::deploy, {}});
    REQUIRE(created);
    CHECK(*(*store)->count() == 1);

    auto found = (*store)->verify(created->token);
    REQUIRE(found);
    REQUIRE(*found);
    CHECK((*found)->id == created->info.id);
    CHECK((*found)->app == "web");
    CHECK((*found)->scope == Scope::deploy);
    CHECK_FALSE((*found)->last_used_at.empty());

    auto wrong = created->token;
    wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
    CHECK_FALSE(*(*store)->verify(wrong));
    CHECK_FALSE(*(*store)->verify("dpa_nonsense"));

    // recognize: the same answer, on its own connection, even while another
    // connection holds the write lock.
    auto writer = agent::sqlite::Database::open(dir.path() / "state.db");
    REQUIRE(writer);
    REQUIRE((*writer)->exec("BEGIN IMMEDIATE"));
    const auto recognized = (*store)->recognize(created->token);
    REQUIRE(recognized);
    CHECK(recognized->id == created->info.id);
    CHECK_FALSE((*store)->recognize(wrong));
    CHECK_FALSE((*store)->recognize("dpa_nonsense"));
    REQUIRE((*writer)->exec("ROLLBACK"));

    SUBCASE("the database never holds the secret") {
        auto db = agent::sqlite::Database::open(dir.path() / "state.db");
        REQUIRE(db);
        auto q = (*db)->prepare("SELECT secret_hash FROM api_tokens");
        REQUIRE(q);
        REQUIRE(*q->step());
        const auto secret = parse_token(created->token)->secret;
        CHECK(q->text(0) == hash_secret(secret));
        CHECK(q->text(0).find(secret) == std::string::npos);
    }
    SUBCASE("a revoke through another connection counts on the next lookup") {
        auto other = AuthStore::open(dir.path() / "state.db");
        REQUIRE(other);
        auto revoked = (*other)->revoke(created->info.id);
        REQUIRE(revoked);
        CHECK_FALSE(revoked->revoked_at.empty());
        auto again = (*store)->verify(created->token);
        REQUIRE(*again);
        CHECK(decide(**again, {Scope::read, "web", false}, now()).verdict ==
              Verdict::unauthorized);
        CHECK((*other)->revoke("ffffffffffff").error().kind == common::ErrorKind::not_found);
    }
}

TEST_CASE("the first start writes an admin token 0600, once") {
    test::TempDir dir;
    auto store = AuthStore::open(dir.path() / "state.db");
    REQUIRE(store);
    const auto path = dir.path() / "admin.token";
    auto made = ensure_admin_token(**store, path);
    REQUIRE(made);
    CHECK(*made);
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    auto text = common::read_file(path);
    REQUIRE(text);
    auto found = (*store)->verify(text->substr(0, text->size() - 1));
    REQUIRE(*found);
    CHECK((*found)->scope == Scope::admin);
    CHECK((*found)->app.empty());
    CHECK_FALSE(*ensure_admin_token(**store, path)); // tokens exist: nothing new
}

TEST_CASE("the audit log keeps entries newest first, filtered by app and time") {
    test::TempDir dir;
    auto store = AuthStore::open(dir.path() / "state.db");
    REQUIRE(store);
    AuditEntry entry;
    entry.who = "token:0123456789ab";
    entry.method = "POST";
    entry.path = "/v1/apps/web/deployments";
    entry.app = "web";
    entry.release = "v1";
    entry.status = 201;
    entry.result = "ok";
    REQUIRE((*store)->record(entry));
    entry.app = "api";
    entry.path = "/v1/apps/api/rollback";
    entry.status = 403;
    entry.result = "error";
    entry.error_code = "forbidden";
    REQUIRE((*store)->record(entry));

    auto all = (*store)->audit({});
    REQUIRE(all);
    REQUIRE(all->size() == 2);
    CHECK((*all)[0].app == "api");
    CHECK((*all)[0].error_code == "forbidden");
    CHECK((*all)[1].release == "v1");
    auto web = (*store)->audit({"web", "", 100});
    REQUIRE(web->size() == 1);
    CHECK((*web)[0].status == 201);
    CHECK((*store)->audit({"", "", 1})->size() == 1);
    CHECK((*store)->audit({"", "2999-01-01T00:00:00.000Z", 100})->empty());
}

TEST_CASE("the audit's who") {
    agent::api::Peer peer;
    CHECK(agent::api::who(peer) == "anonymous");
    peer.token_id = "0123456789ab";
    CHECK(agent::api::who(peer) == "token:0123456789ab");
    peer = {};
    peer.unix_socket = true;
    peer.user = "deploy";
    CHECK(agent::api::who(peer) == "unix:deploy");
    peer.via_ssh = true;
    CHECK(agent::api::who(peer) == "ssh:deploy");
}
