#include <agent/store/schema.hpp>
#include <agent/store/sqlite.hpp>

#include <array>
#include <string>
#include <string_view>

namespace agent::schema {

using common::ErrorKind;
using common::make_error;

namespace {

// One step of the schema: `sql` (any number of statements), then `apply`,
// when given, for what SQL alone cannot do (reading rows to rewrite them).
struct Migration {
    std::string_view sql;
    common::Status (*apply)(sqlite::Database& db) = nullptr;
};

// 1: releases, one row per app for the next release number, the transitions.
constexpr std::string_view k_releases = R"sql(
CREATE TABLE IF NOT EXISTS apps (
  name     TEXT PRIMARY KEY,
  next_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
  app        TEXT NOT NULL REFERENCES apps(name),
  id         TEXT NOT NULL,
  seq        INTEGER NOT NULL,
  state      TEXT NOT NULL CHECK (state IN ('QUEUED','BUILDING','PROVISIONING',
                                            'PRODUCTION','INACTIVE','FAILED')),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  "commit"   TEXT NOT NULL DEFAULT '',
  message    TEXT NOT NULL DEFAULT '',
  error      TEXT NOT NULL DEFAULT '',
  port       INTEGER NOT NULL DEFAULT 0,
  pid        INTEGER NOT NULL DEFAULT 0,
  pid_start  INTEGER NOT NULL DEFAULT 0,
  config     TEXT NOT NULL DEFAULT '',
  dirty      INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (app, id),
  UNIQUE (app, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_production ON releases(app) WHERE state = 'PRODUCTION';
CREATE TABLE IF NOT EXISTS transitions (
  ts         TEXT NOT NULL,
  app        TEXT NOT NULL,
  release    TEXT NOT NULL,
  from_state TEXT NOT NULL DEFAULT '',
  to_state   TEXT NOT NULL DEFAULT '',
  detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS transitions_app ON transitions(app, ts);
)sql";

// 2: deployctl env: each app's wrapped data key, its variables (secret ones
// sealed), and the sealed secrets each release started with.
constexpr std::string_view k_env = R"sql(
CREATE TABLE IF NOT EXISTS app_keys (
  app        TEXT PRIMARY KEY,
  wrapped    TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS release_secrets (
  app        TEXT NOT NULL,
  release    TEXT NOT NULL,
  name       TEXT NOT NULL,
  value      TEXT NOT NULL,
  PRIMARY KEY (app, release, name)
);
CREATE TABLE IF NOT EXISTS env (
  app        TEXT NOT NULL,
  name       TEXT NOT NULL,
  secret     INTEGER NOT NULL,
  value      TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (app, name)
);
)sql";

// 3: API tokens and the audit log of mutating API calls. IF NOT EXISTS: before
// they were versioned, these were created on every open, so a database of any
// earlier version may have them already. release_secrets again, as in 2: it was
// added to version 2 after databases had been written at version 2 without it.
constexpr std::string_view k_auth = R"sql(
CREATE TABLE IF NOT EXISTS release_secrets (
  app        TEXT NOT NULL,
  release    TEXT NOT NULL,
  name       TEXT NOT NULL,
  value      TEXT NOT NULL,
  PRIMARY KEY (app, release, name)
);
CREATE TABLE IF NOT EXISTS api_tokens (
  id           TEXT PRIMARY KEY,
  name         TEXT NOT NULL DEFAULT '',
  app          TEXT NOT NULL DEFAULT '',
  scope        TEXT NOT NULL CHECK (scope IN ('read','deploy','admin')),
  secret_hash  TEXT NOT NULL,
  created_at   TEXT NOT NULL,
  expires_at   TEXT NOT NULL DEFAULT '',
  revoked_at   TEXT NOT NULL DEFAULT '',
  last_used_at TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS api_audit (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  ts         TEXT NOT NULL,
  who        TEXT NOT NULL,
  token_name TEXT NOT NULL DEFAULT '',
  method     TEXT NOT NULL,
  path       TEXT NOT NULL,
  app        TEXT NOT NULL DEFAULT '',
  release    TEXT NOT NULL DEFAULT '',
  status     INTEGER NOT NULL,
  result     TEXT NOT NULL,
  error_code TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS api_audit_app ON api_audit(app, id);
)sql";

// 4: what a release is (its tree and config digests, for status across hosts
// and no-op redeploys), apps that are stopped (deployctl stop), and the
// history of switches (which release served when; rollback follows it),
// filled from the transitions recorded before it existed.
constexpr std::string_view k_history = R"sql(
ALTER TABLE apps ADD COLUMN stopped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE releases ADD COLUMN tree_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE releases ADD COLUMN config_digest TEXT NOT NULL DEFAULT '';
CREATE TABLE switches (
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  ts       TEXT NOT NULL,
  app      TEXT NOT NULL,
  release  TEXT NOT NULL,
  previous TEXT NOT NULL DEFAULT '',
  reason   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX switches_app ON switches(app, id);
INSERT INTO switches (ts, app, release, reason)
  SELECT ts, app, release, CASE from_state WHEN 'INACTIVE' THEN 'rollback' ELSE 'deploy' END
  FROM transitions WHERE to_state = 'PRODUCTION' ORDER BY rowid;
UPDATE switches SET previous = coalesce((SELECT earlier.release FROM switches AS earlier
  WHERE earlier.app = switches.app AND earlier.id < switches.id ORDER BY earlier.id DESC LIMIT 1), '');
)sql";

// Adds a column unless the table has it. (A function: an api_audit made by
// `deploy-agent token` before the tables were versioned, and found again by
// migration 3, may already have the columns later migrations add.)
common::Status add_column(sqlite::Database& db, const char* table, const char* column,
                          const char* definition) {
    TRY_ASSIGN(auto columns, db.prepare(std::string("SELECT count(*) FROM pragma_table_info('") +
                                        table + "') WHERE name = ?"));
    columns.bind(column);
    TRY_ASSIGN(const bool has_row, columns.step());
    if (has_row && columns.integer(0) > 0)
        return {};
    return db.exec(std::string("ALTER TABLE ") + table + " ADD COLUMN " + column + " " +
                   definition);
}

// 5: failed logins are audited once per client address and minute, not once
// per request: the row says how many requests it stands for.
common::Status add_audit_count(sqlite::Database& db) {
    return add_column(db, "api_audit", "count", "INTEGER NOT NULL DEFAULT 1");
}

// 6: deployctl run records the command it ran (its argv, a JSON array).
common::Status add_audit_command(sqlite::Database& db) {
    return add_column(db, "api_audit", "command", "TEXT NOT NULL DEFAULT ''");
}

// 7: the processes of a release other than its web one ([processes] in
// deploy.toml), one row per instance, and when the web process started and
// how often it was restarted (deployctl ps).
constexpr std::string_view k_processes = R"sql(
CREATE TABLE processes (
  app        TEXT NOT NULL,
  release    TEXT NOT NULL,
  process    TEXT NOT NULL,
  instance   INTEGER NOT NULL,
  pid        INTEGER NOT NULL DEFAULT 0,
  pid_start  INTEGER NOT NULL DEFAULT 0,
  started_at TEXT NOT NULL DEFAULT '',
  restarts   INTEGER NOT NULL DEFAULT 0,
  last_exit  TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (app, release, process, instance)
);
ALTER TABLE releases ADD COLUMN started_at TEXT NOT NULL DEFAULT '';
ALTER TABLE releases ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE releases ADD COLUMN last_exit TEXT NOT NULL DEFAULT '';
)sql";

// 8: [[cron]] jobs: whether a release runs them on this host (a fleet deploy
// turns them on on its first host only), and per app and job the last due
// minute handled (claimed before its run starts), the last run, and the
// process of the run going on (killed after a crash).
constexpr std::string_view k_cron = R"sql(
ALTER TABLE releases ADD COLUMN cron INTEGER NOT NULL DEFAULT 1;
CREATE TABLE IF NOT EXISTS cron_jobs (
  app          TEXT NOT NULL,
  job          TEXT NOT NULL,
  last_due     TEXT NOT NULL DEFAULT '',
  started      TEXT NOT NULL DEFAULT '',
  finished     TEXT NOT NULL DEFAULT '',
  exit_status  INTEGER NOT NULL DEFAULT 0,
  duration_ms  INTEGER NOT NULL DEFAULT 0,
  outcome      TEXT NOT NULL DEFAULT '',
  release      TEXT NOT NULL DEFAULT '',
  pid          INTEGER NOT NULL DEFAULT 0,
  pid_start    INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (app, job)
);
)sql";

// 9: instance counts per app and process (deployctl scale), kept across deploys;
// and the port of each web instance past the first (the first is the release's).
constexpr std::string_view k_scale = R"sql(
CREATE TABLE IF NOT EXISTS scale (
  app      TEXT NOT NULL,
  process  TEXT NOT NULL,
  count    INTEGER NOT NULL,
  PRIMARY KEY (app, process)
);
ALTER TABLE processes ADD COLUMN port INTEGER NOT NULL DEFAULT 0;
)sql";

// 10: how deploy-proxy treats an app's requests (deployctl maintenance, pause;
// and whether an app with [deploy] idle_stop sleeps), kept across deploys,
// rollbacks and restarts. No row: served normally.
constexpr std::string_view k_traffic = R"sql(
CREATE TABLE IF NOT EXISTS traffic (
  app               TEXT PRIMARY KEY,
  maintenance       INTEGER NOT NULL DEFAULT 0,
  message           TEXT NOT NULL DEFAULT '',
  retry_after       INTEGER NOT NULL DEFAULT 0,
  maintenance_since TEXT NOT NULL DEFAULT '',
  paused            INTEGER NOT NULL DEFAULT 0,
  pause_timeout_ms  INTEGER NOT NULL DEFAULT 0,
  paused_since      TEXT NOT NULL DEFAULT '',
  sleeping          INTEGER NOT NULL DEFAULT 0
);
)sql";

// 11: canary releases.
// The releases table's CHECK gains 'CANARY': SQLite cannot alter a CHECK, so
// the table is made again from its own text (every column added since kept),
// its rows copied, and its index made again. And one row per app with a canary:
// its share of the traffic and, with --auto, when it is judged (unix
// seconds, 0: never) and the 5xx rate over PRODUCTION's it may have (in
// hundredths of a percentage point).
common::Status add_canary_state(sqlite::Database& db) {
    std::string sql;
    {
        TRY_ASSIGN(auto read, db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND"
                                         " name = 'releases'"));
        TRY(read.each([&](const sqlite::Statement& row) { sql = row.text(0); }));
    }
    const auto open = sql.find('(');
    const std::string states = "'PROVISIONING',";
    const auto at = sql.find(states);
    if (open == std::string::npos || at == std::string::npos)
        return make_error(ErrorKind::internal, "state.db: unexpected releases table: " + sql);
    if (sql.find("'CANARY'") == std::string::npos)
        sql.insert(at + states.size(), "'CANARY',");
    TRY(db.exec("CREATE TABLE releases_new " + sql.substr(open)));
    TRY(db.exec("INSERT INTO releases_new SELECT * FROM releases; DROP TABLE releases;"
                " ALTER TABLE releases_new RENAME TO releases;"
                " CREATE UNIQUE INDEX IF NOT EXISTS one_production ON releases(app)"
                " WHERE state = 'PRODUCTION';"));
    return {};
}

constexpr std::string_view k_canaries = R"sql(
CREATE TABLE IF NOT EXISTS canaries (
  app            TEXT PRIMARY KEY,
  release        TEXT NOT NULL,
  percent        INTEGER NOT NULL,
  auto_at        INTEGER NOT NULL DEFAULT 0,
  max_error_bp   INTEGER NOT NULL DEFAULT 100,
  created_at     TEXT NOT NULL
);
)sql";

// 12: webhooks (docs/git.md): each app's webhook secret, sealed with its data key, and the
// deliveries received (one row per provider's delivery id: a delivery seen before is not
// deployed again).
constexpr std::string_view k_hooks = R"sql(
CREATE TABLE IF NOT EXISTS hook_secrets (
  app        TEXT PRIMARY KEY,
  sealed     TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hook_deliveries (
  app         TEXT NOT NULL,
  provider    TEXT NOT NULL,
  delivery    TEXT NOT NULL,
  received_at TEXT NOT NULL,
  event       TEXT NOT NULL,
  ref         TEXT NOT NULL DEFAULT '',
  commit_id   TEXT NOT NULL DEFAULT '',
  release     TEXT NOT NULL DEFAULT '',
  result      TEXT NOT NULL,
  detail      TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (app, provider, delivery)
);
CREATE INDEX IF NOT EXISTS hook_deliveries_time ON hook_deliveries(app, received_at);
)sql";

// 13: preview environments (docs/git.md): one row per open pull request of an app that
// has a preview (app APP-pr-N), what it serves and whether it is closing (a close whose
// destroy was refused while the preview was being deployed, retried on the next delivery
// or listing).
constexpr std::string_view k_previews = R"sql(
CREATE TABLE IF NOT EXISTS previews (
  app         TEXT NOT NULL,
  number      INTEGER NOT NULL,
  preview_app TEXT NOT NULL UNIQUE,
  provider    TEXT NOT NULL,
  ref         TEXT NOT NULL,
  commit_id   TEXT NOT NULL DEFAULT '',
  release     TEXT NOT NULL DEFAULT '',
  closing     INTEGER NOT NULL DEFAULT 0,
  detail      TEXT NOT NULL DEFAULT '',
  created_at  TEXT NOT NULL,
  updated_at  TEXT NOT NULL,
  PRIMARY KEY (app, number)
);
)sql";

// 14: fetching over ssh (docs/git.md): each app's deploy key, its private half sealed with
// the app's data key, and the host keys its fetches have met (trusted on first use, a
// changed one refused).
constexpr std::string_view k_git_keys = R"sql(
CREATE TABLE IF NOT EXISTS git_keys (
  app        TEXT PRIMARY KEY,
  sealed     TEXT NOT NULL,
  public_key TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS git_hosts (
  app      TEXT NOT NULL,
  host     TEXT NOT NULL,
  key      TEXT NOT NULL,
  added_at TEXT NOT NULL,
  PRIMARY KEY (app, host)
);
)sql";

// 15: build reuse (docs/build-cache.md): the digest of a release's build inputs (tree,
// build command, build environment, engine), set once its build succeeded; a later build
// of the same inputs reuses that build's output.
constexpr std::string_view k_build_keys = R"sql(
ALTER TABLE releases ADD COLUMN build_key TEXT NOT NULL DEFAULT '';
)sql";

// Migration N is k_migrations[N - 1]. One that has shipped is never edited:
// a change to the schema is a new migration at the end.
constexpr std::array k_migrations{
    Migration{k_releases},
    Migration{k_env},
    Migration{k_auth},
    Migration{k_history},
    Migration{"", &add_audit_count},
    Migration{"", &add_audit_command},
    Migration{k_processes},
    Migration{k_cron},
    Migration{k_scale},
    Migration{k_traffic},
    Migration{k_canaries, &add_canary_state},
    Migration{k_hooks},
    Migration{k_previews},
    Migration{k_git_keys},
    Migration{k_build_keys},
};
static_assert(k_migrations.size() == k_latest_version);

common::Error too_new(int found) {
    return make_error(ErrorKind::internal, "state.db has schema version " + std::to_string(found) +
                                               ", newer than this agent understands (" +
                                               std::to_string(k_latest_version) +
                                               "); upgrade deploy-agent");
}

// Applies migration `current + 1` unless another process did since `current`
// was read; `current` is then the version found.
common::Status apply_next(sqlite::Database& db, int& current) {
    sqlite::Transaction tx(db);
    TRY(tx.begun());
    TRY_ASSIGN(current, version(db));
    if (current >= k_latest_version)
        return {};
    const Migration& next = k_migrations[current];
    TRY(db.exec(next.sql));
    if (next.apply)
        TRY(next.apply(db));
    TRY(db.exec("PRAGMA user_version = " + std::to_string(current + 1)));
    TRY(tx.commit());
    ++current;
    return {};
}

} // namespace

common::Result<int> version(sqlite::Database& db) {
    TRY_ASSIGN(auto query, db.prepare("PRAGMA user_version"));
    TRY_ASSIGN(const bool has_row, query.step());
    return has_row ? static_cast<int>(query.integer(0)) : 0;
}

common::Status migrate(sqlite::Database& db) {
    TRY_ASSIGN(int current, version(db));
    while (current < k_latest_version)
        TRY(apply_next(db, current));
    if (current > k_latest_version)
        return too_new(current);
    return {};
}

} // namespace agent::schema
