// agent/store/schema.hpp: state.db's migrations, on a fresh file and on a
// state.db an agent wrote at schema version 2 (tests/fixtures/state-db/).
#include <agent/auth/auth_store.hpp>
#include <agent/store/schema.hpp>
#include <agent/store/sqlite.hpp>
#include <agent/store/store.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "fixtures.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using agent::Store;
using agent::auth::AuthStore;
using agent::schema::k_latest_version;
using agent::sqlite::Database;

namespace {

const fs::path k_v2_db = test::fixtures_dir() / "state-db" / "v2.db";

const std::vector<std::string> k_tables = {"apps",       "releases",        "transitions",
                                           "app_keys",   "release_secrets", "env",
                                           "api_tokens", "api_audit"};

fs::path copy_of_v2(const test::TempDir& dir) {
    auto path = dir.path() / "state.db";
    fs::copy_file(k_v2_db, path);
    return path;
}

std::unique_ptr<Database> open_raw(const fs::path& path) {
    auto db = Database::open(path);
    REQUIRE(db.ok());
    return std::move(*db);
}

// The first column of each row of `sql`, as text.
std::vector<std::string> column(Database& db, const std::string& sql) {
    std::vector<std::string> values;
    auto query = db.prepare(sql);
    REQUIRE(query.ok());
    auto read =
        query->each([&](const agent::sqlite::Statement& row) { values.push_back(row.text(0)); });
    REQUIRE(read.ok());
    return values;
}

std::map<std::string, std::string> row_counts(Database& db) {
    std::map<std::string, std::string> counts;
    for (const auto& table : k_tables)
        counts[table] = column(db, "SELECT COUNT(*) FROM " + table).at(0);
    return counts;
}

int version_of(const fs::path& path) {
    auto db = open_raw(path);
    auto version = agent::schema::version(*db);
    REQUIRE(version.ok());
    return *version;
}

// What sqlite_master says of the schema (all of it but where its pages are).
std::vector<std::string> schema_of(const fs::path& path) {
    auto db = open_raw(path);
    return column(*db, "SELECT type || ' ' || name || ' ON ' || tbl_name || ': ' ||"
                       " coalesce(sql, '') FROM sqlite_master ORDER BY type, name");
}

std::vector<std::string> ids_and_states(const std::vector<agent::ReleaseRow>& rows) {
    std::vector<std::string> out;
    for (const auto& row : rows)
        out.push_back(row.id + "=" + std::string(common::to_string(row.state)));
    return out;
}

} // namespace

TEST_CASE("a state.db written at schema version 2 upgrades with every row kept") {
    test::TempDir dir;
    const auto path = copy_of_v2(dir);
    std::map<std::string, std::string> before;
    {
        auto db = open_raw(path);
        before = row_counts(*db);
    }
    CHECK(version_of(path) == 2);
    CHECK(before == std::map<std::string, std::string>{{"apps", "2"},
                                                       {"releases", "4"},
                                                       {"transitions", "18"},
                                                       {"app_keys", "1"},
                                                       {"release_secrets", "2"},
                                                       {"env", "3"},
                                                       {"api_tokens", "3"},
                                                       {"api_audit", "20"}});

    auto store = Store::open(path);
    REQUIRE(store.ok());
    auto tokens = AuthStore::open(path);
    REQUIRE(tokens.ok());
    CHECK(version_of(path) == k_latest_version);
    {
        auto db = open_raw(path);
        CHECK(row_counts(*db) == before);
        CHECK(column(*db, "PRAGMA integrity_check") == std::vector<std::string>{"ok"});
        CHECK(column(*db, "PRAGMA foreign_key_check").empty());
    }

    Store& s = **store;
    CHECK(s.apps() == std::vector<std::string>{"hello", "other"});
    CHECK(ids_and_states(s.releases("hello")) ==
          std::vector<std::string>{"v3=FAILED", "v2=INACTIVE", "v1=PRODUCTION"});
    CHECK(ids_and_states(s.releases("other")) == std::vector<std::string>{"v1=PRODUCTION"});
    CHECK(s.get("hello", "v3")->error == "build failed: command exited with status 3");
    CHECK(s.get("hello", "v2")->message == "Version 2");
    CHECK(s.data_key("hello").has_value());
    CHECK_FALSE(s.data_key("other").has_value());
    const auto env = s.env("hello");
    REQUIRE(env.size() == 2);
    CHECK(env[0].name == "API_TOKEN");
    CHECK(env[0].secret);
    CHECK(env[0].value != "fixture-secret-value"); // sealed
    CHECK(env[1].name == "MODE");
    CHECK(env[1].value == "fixture-plain-value");
    CHECK(s.release_secrets("hello", "v1").size() == 1);
    const auto transitions = s.audit("hello");
    REQUIRE_FALSE(transitions.empty());
    CHECK(transitions.front().release == "v1");
    CHECK(transitions.front().detail == "created");
    // The switch history is made from the transitions: deployed v1, deployed
    // v2, rolled back to v1.
    std::vector<std::string> switches;
    for (const auto& row : s.switches("hello"))
        switches.push_back(row.release + "<" + row.previous + " " + row.reason);
    CHECK(switches == std::vector<std::string>{"v1< deploy", "v2<v1 deploy", "v1<v2 rollback"});
    CHECK(s.switches("other").size() == 1);
    CHECK(s.get("hello", "v1")->tree_digest.empty());
    // Releases from before [[cron]] run the jobs on their host (migration 7).
    CHECK(s.get("hello", "v1")->cron);
    CHECK(s.cron_jobs("hello").empty());

    auto listed = (*tokens)->list();
    REQUIRE(listed.ok());
    std::vector<std::string> names;
    for (const auto& token : *listed)
        names.push_back(token.id + " " + token.name + " " + agent::auth::to_string(token.scope) +
                        (token.revoked_at.empty() ? "" : " revoked"));
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"0ebe8cfff714 fixture-reader read revoked",
                                            "dbd9c695feed admin (first start) admin",
                                            "f1d2fbdac458 fixture-ci deploy"});
    agent::auth::AuditQuery query;
    query.app = "hello";
    auto audit = (*tokens)->audit(query);
    REQUIRE(audit.ok());
    const bool rolled_back =
        std::any_of(audit->begin(), audit->end(), [](const agent::auth::AuditEntry& e) {
            return e.method == "POST" && e.path == "/v1/apps/hello/rollback" && e.status == 200 &&
                   e.result == "ok";
        });
    CHECK(rolled_back);

    // And it takes new rows.
    auto next = s.create({"hello", "app = \"hello\"\n", "abc", "next", false, "tree", "config"});
    REQUIRE(next.ok());
    CHECK(next->id == "v4");
    CHECK(s.get("hello", "v4")->tree_digest == "tree");
    CHECK(s.get("hello", "v4")->config_digest == "config");
    auto claimed = s.claim_cron_due("hello", "tick", "2026-01-01T00:00:00Z");
    REQUIRE(claimed.ok());
    CHECK(*claimed);
    CHECK((*tokens)->create({"after upgrade", "hello", agent::auth::Scope::read, {}}).ok());
}

TEST_CASE("a fresh state.db and an upgraded one have the same schema") {
    test::TempDir dir;
    const auto fresh = dir.path() / "fresh.db";
    SUBCASE("the agent opens it first") {
        REQUIRE(Store::open(fresh).ok());
    }
    SUBCASE("deploy-agent token opens it first") {
        REQUIRE(AuthStore::open(fresh).ok());
    }
    const auto upgraded = copy_of_v2(dir);
    const auto as_written = schema_of(upgraded); // migrations 1 and 2 and the unversioned tables
    REQUIRE(Store::open(upgraded).ok());
    CHECK(version_of(fresh) == k_latest_version);
    const auto now = schema_of(upgraded);
    CHECK(schema_of(fresh) == now);
    // Every index of version 2 is still there as it was.
    for (const auto& entry : as_written)
        if (entry.rfind("index ", 0) == 0)
            CHECK(std::count(now.begin(), now.end(), entry) == 1);
    CHECK(std::count(now.begin(), now.end(),
                     "index one_production ON releases: CREATE UNIQUE INDEX one_production ON "
                     "releases(app) WHERE state = 'PRODUCTION'") == 1);
}

TEST_CASE("a state.db only deploy-agent token wrote keeps its tokens when the agent opens it") {
    // Before their tables were versioned, `deploy-agent token create` on a new
    // data dir left the token tables and a user_version of 0.
    test::TempDir dir;
    const auto path = dir.path() / "state.db";
    std::string token;
    {
        auto tokens = AuthStore::open(path);
        REQUIRE(tokens.ok());
        auto created = (*tokens)->create({"early", {}, agent::auth::Scope::admin, {}});
        REQUIRE(created.ok());
        token = created->token;
    }
    {
        auto db = open_raw(path);
        REQUIRE(db->exec("DROP TABLE env; DROP TABLE release_secrets; DROP TABLE app_keys;"
                         " DROP TABLE transitions; DROP TABLE releases; DROP TABLE apps;"
                         " DROP TABLE switches; DROP TABLE processes; PRAGMA user_version = 0")
                    .ok());
    }
    REQUIRE(version_of(path) == 0);
    REQUIRE(Store::open(path).ok());
    CHECK(version_of(path) == k_latest_version);
    auto tokens = AuthStore::open(path);
    REQUIRE(tokens.ok());
    auto verified = (*tokens)->verify(token);
    REQUIRE(verified.ok());
    CHECK(verified->has_value());

    const auto fresh = dir.path() / "fresh.db";
    REQUIRE(Store::open(fresh).ok());
    CHECK(schema_of(path) == schema_of(fresh));
}

TEST_CASE("a state.db newer than the agent is refused, and left alone") {
    test::TempDir dir;
    const auto path = dir.path() / "state.db";
    REQUIRE(Store::open(path).ok());
    {
        auto db = open_raw(path);
        REQUIRE(db->exec("PRAGMA user_version = " + std::to_string(k_latest_version + 1)).ok());
    }
    const std::string message = "state.db has schema version " +
                                std::to_string(k_latest_version + 1) +
                                ", newer than this agent understands (" +
                                std::to_string(k_latest_version) + "); upgrade deploy-agent";
    auto store = Store::open(path);
    REQUIRE_FALSE(store.ok());
    CHECK(store.error().kind == common::ErrorKind::internal);
    CHECK(store.error().message == message);
    auto tokens = AuthStore::open(path);
    REQUIRE_FALSE(tokens.ok());
    CHECK(tokens.error().message == message);
    CHECK(version_of(path) == k_latest_version + 1);
}

TEST_CASE("the agent and deploy-agent token opening a new state.db at once both succeed") {
    test::TempDir dir;
    const auto path = dir.path() / "state.db";
    open_raw(path); // the file exists, in WAL mode; its schema does not
    REQUIRE(version_of(path) == 0);
    std::atomic<int> opened{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i)
        threads.emplace_back([&, i] {
            const bool ok = i % 2 ? Store::open(path).ok() : AuthStore::open(path).ok();
            opened += ok ? 1 : 0;
        });
    for (auto& thread : threads)
        thread.join();
    CHECK(opened == 4);
    CHECK(version_of(path) == k_latest_version);
}

TEST_CASE("a version 2 state.db written before release_secrets existed gets the table") {
    test::TempDir dir;
    const auto fresh = dir.path() / "fresh.db";
    REQUIRE(Store::open(fresh).ok());
    const auto old = copy_of_v2(dir);
    {
        auto db = open_raw(old);
        REQUIRE(db->exec("DROP TABLE release_secrets").ok());
    }
    REQUIRE(version_of(old) == 2);
    REQUIRE(Store::open(old).ok());
    CHECK(version_of(old) == k_latest_version);
    CHECK(schema_of(old) == schema_of(fresh));
    auto db = open_raw(old);
    CHECK(column(*db, "SELECT COUNT(*) FROM release_secrets").at(0) == "0");
    CHECK(column(*db, "SELECT COUNT(*) FROM releases").at(0) != "0");
}
