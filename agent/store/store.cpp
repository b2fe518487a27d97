#include <agent/store/schema.hpp>
#include <agent/store/sqlite.hpp>
#include <agent/store/store.hpp>
#include <common/log.hpp>

#include <fmt/format.h>

namespace agent {

using common::ErrorKind;
using common::make_error;
using common::State;

namespace {

constexpr std::string_view k_columns =
    R"(app, id, seq, state, created_at, updated_at, "commit", message, error, port, pid,)"
    R"( pid_start, config, dirty, tree_digest, config_digest, started_at, restarts, last_exit, cron,)"
    R"( build_key)";

std::string now() {
    char buffer[32];
    return std::string(common::now_rfc3339(buffer));
}

// The app's data key, wrapped, recorded with the first sealed value that needs it (in the
// caller's transaction); nothing when it has one already (`wrapped_key` empty).
common::Status insert_app_key(sqlite::Database& db, const std::string& app,
                              const std::optional<std::string>& wrapped_key) {
    if (!wrapped_key)
        return {};
    TRY_ASSIGN(auto insert,
               db.prepare("INSERT INTO app_keys (app, wrapped, created_at) VALUES (?, ?, ?)"));
    return insert.bind(app).bind(*wrapped_key).bind(now()).run();
}

ReleaseRow read_row(const sqlite::Statement& s) {
    ReleaseRow row;
    row.app = s.text(0);
    row.id = s.text(1);
    row.seq = s.integer(2);
    row.state = common::parse_state(s.text(3)).value_or(State::failed);
    row.created_at = s.text(4);
    row.updated_at = s.text(5);
    row.commit = s.text(6);
    row.message = s.text(7);
    row.error = s.text(8);
    row.port = static_cast<int>(s.integer(9));
    row.pid = static_cast<int>(s.integer(10));
    row.pid_start = s.integer(11);
    row.config = s.text(12);
    row.dirty = s.integer(13) != 0;
    row.tree_digest = s.text(14);
    row.config_digest = s.text(15);
    row.started_at = s.text(16);
    row.restarts = static_cast<int>(s.integer(17));
    row.last_exit = s.text(18);
    row.cron = s.integer(19) != 0;
    row.build_key = s.text(20);
    return row;
}

std::string name(State state) {
    return std::string(common::to_string(state));
}

} // namespace

Store::Store(std::unique_ptr<sqlite::Database> db) : m_db(std::move(db)) {}
Store::~Store() = default;

common::Result<std::unique_ptr<Store>> Store::open(const std::filesystem::path& path) {
    TRY_ASSIGN(auto db, sqlite::Database::open(path));
    // Deleted rows (a replaced secret, a removed variable) are overwritten
    // with zeros, not left in free pages.
    TRY(db->exec("PRAGMA secure_delete = ON"));
    TRY(schema::migrate(*db));
    return std::unique_ptr<Store>(new Store(std::move(db)));
}

common::Status Store::write_audit(const std::string& app, const std::string& id,
                                  std::string_view from, std::string_view to,
                                  std::string_view detail) {
    TRY_ASSIGN(auto insert, m_db->prepare("INSERT INTO transitions (ts, app, release, from_state, "
                                          "to_state, detail) VALUES (?, ?, ?, ?, ?, ?)"));
    return insert.bind(now()).bind(app).bind(id).bind(from).bind(to).bind(detail).run();
}

common::Result<ReleaseRow> Store::create(const NewRelease& release) {
    std::lock_guard lock(m_mutex);
    sqlite::Transaction tx(*m_db);
    TRY(tx.begun());
    ReleaseRow row;
    row.app = release.app;
    if (release.seq > 0) {
        TRY_ASSIGN(auto next, m_db->prepare("SELECT next_seq FROM apps WHERE name = ?"));
        next.bind(release.app);
        TRY_ASSIGN(const bool known, next.step());
        if (known && release.seq < next.integer(0))
            return make_error(ErrorKind::refused,
                              "release id v" + std::to_string(release.seq) +
                                  " is taken: " + release.app + " had ids up to v" +
                                  std::to_string(next.integer(0) - 1) +
                                  " on this agent (ids are never reused); the next free one is v" +
                                  std::to_string(next.integer(0)));
        TRY_ASSIGN(auto reserve,
                   m_db->prepare("INSERT INTO apps (name, next_seq) VALUES (?, ?) ON "
                                 "CONFLICT(name) DO UPDATE SET next_seq = excluded.next_seq"));
        TRY(reserve.bind(release.app).bind(release.seq + 1).run());
        row.seq = release.seq;
    } else {
        TRY_ASSIGN(auto upsert,
                   m_db->prepare("INSERT INTO apps (name, next_seq) VALUES (?, 2) ON CONFLICT(name)"
                                 " DO UPDATE SET next_seq = next_seq + 1 RETURNING next_seq - 1"));
        upsert.bind(release.app);
        TRY_ASSIGN(const bool got, upsert.step());
        if (!got)
            return make_error(ErrorKind::internal, "database: no sequence number returned");
        row.seq = upsert.integer(0);
        TRY(upsert.run());
    }
    row.id = "v" + std::to_string(row.seq);
    row.created_at = row.updated_at = now();
    row.commit = release.commit;
    row.message = release.message;
    row.config = release.config;
    row.dirty = release.dirty;
    row.tree_digest = release.tree_digest;
    row.config_digest = release.config_digest;
    row.cron = release.cron;
    TRY_ASSIGN(auto insert, m_db->prepare(R"(INSERT INTO releases (app, id, seq, state, created_at,
        updated_at, "commit", message, config, dirty, tree_digest, config_digest, cron)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?))"));
    insert.bind(row.app).bind(row.id).bind(row.seq).bind(name(State::queued));
    insert.bind(row.created_at).bind(row.updated_at).bind(row.commit).bind(row.message);
    insert.bind(row.config).bind(row.dirty ? 1 : 0).bind(row.tree_digest).bind(row.config_digest);
    insert.bind(row.cron ? 1 : 0);
    TRY(insert.run());
    TRY(write_audit(row.app, row.id, "", "QUEUED", "created"));
    TRY(tx.commit());
    return row;
}

common::Status Store::cas_state(const std::string& app, const std::string& id, State from, State to,
                                std::string_view error, std::string_view detail) {
    if (!common::can_transition(from, to))
        return make_error(ErrorKind::refused,
                          "release " + id + " cannot go from " + name(from) + " to " + name(to));
    TRY_ASSIGN(auto update, m_db->prepare("UPDATE releases SET state = ?, updated_at = ?, error = ?"
                                          " WHERE app = ? AND id = ? AND state = ?"));
    update.bind(name(to)).bind(now()).bind(error).bind(app).bind(id).bind(name(from));
    TRY(update.run());
    if (m_db->changes() != 1)
        return make_error(ErrorKind::refused,
                          "release " + id + " of " + app + " is no longer " + name(from));
    return write_audit(app, id, name(from), name(to), error.empty() ? detail : error);
}

common::Status Store::transition(const std::string& app, const std::string& id, State from,
                                 State to, std::string_view detail, std::string_view error) {
    std::lock_guard lock(m_mutex);
    sqlite::Transaction tx(*m_db);
    TRY(tx.begun());
    TRY(cas_state(app, id, from, to, error, detail));
    return tx.commit();
}

common::Result<std::optional<std::string>>
Store::switch_production(const std::string& app, const std::string& id, State from) {
    std::lock_guard lock(m_mutex);
    sqlite::Transaction tx(*m_db);
    TRY(tx.begun());
    std::optional<std::string> previous;
    auto current = query_releases("app = ? AND state = 'PRODUCTION'", {app});
    if (!current.empty() && current.front().id != id) {
        previous = current.front().id;
        TRY(cas_state(app, *previous, State::production, State::inactive, {}, "replaced by " + id));
    }
    const std::string detail = previous ? "replaces " + *previous : "first production release";
    TRY(cas_state(app, id, from, State::production, {}, detail));
    TRY_ASSIGN(auto record,
               m_db->prepare("INSERT INTO switches (ts, app, release, previous, reason)"
                             " VALUES (?, ?, ?, ?, ?)"));
    record.bind(now()).bind(app).bind(id).bind(previous.value_or(""));
    record.bind(from == State::inactive ? "rollback" : "deploy");
    TRY(record.run());
    TRY(tx.commit());
    return previous;
}

common::Status Store::set_process(const std::string& app, const std::string& id, int port, int pid,
                                  std::int64_t pid_start) {
    std::lock_guard lock(m_mutex);
    // started_at follows a new process only: the same one recorded again keeps its time.
    TRY_ASSIGN(auto update,
               m_db->prepare("UPDATE releases SET started_at = CASE WHEN ? = 0 THEN '' WHEN"
                             " pid = ? AND pid_start = ? THEN started_at ELSE ? END, port = ?,"
                             " pid = ?, pid_start = ?, updated_at = ? WHERE app = ? AND id = ?"));
    const auto at = now();
    return update.bind(pid)
        .bind(pid)
        .bind(pid_start)
        .bind(at)
        .bind(port)
        .bind(pid)
        .bind(pid_start)
        .bind(at)
        .bind(app)
        .bind(id)
        .run();
}

common::Status Store::count_restart(const std::string& app, const std::string& id) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto update, m_db->prepare("UPDATE releases SET restarts = restarts + 1"
                                          " WHERE app = ? AND id = ?"));
    return update.bind(app).bind(id).run();
}

common::Status Store::set_last_exit(const std::string& app, const std::string& id,
                                    const std::string& why) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto update,
               m_db->prepare("UPDATE releases SET last_exit = ? WHERE app = ? AND id = ?"));
    return update.bind(why).bind(app).bind(id).run();
}

common::Status Store::put_process(const ProcessRow& row) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto put, m_db->prepare("INSERT OR REPLACE INTO processes (app, release, process,"
                                       " instance, pid, pid_start, started_at, restarts,"
                                       " last_exit, port) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    return put.bind(row.app)
        .bind(row.release)
        .bind(row.process)
        .bind(row.instance)
        .bind(row.pid)
        .bind(row.pid_start)
        .bind(row.started_at)
        .bind(row.restarts)
        .bind(row.last_exit)
        .bind(row.port)
        .run();
}

common::Status Store::remove_process(const std::string& app, const std::string& release,
                                     const std::string& process, int instance) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto erase, m_db->prepare("DELETE FROM processes WHERE app = ? AND release = ?"
                                         " AND process = ? AND instance = ?"));
    return erase.bind(app).bind(release).bind(process).bind(instance).run();
}

common::Status Store::clear_process(const std::string& app, const std::string& id) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto update,
               m_db->prepare("UPDATE releases SET pid = 0, pid_start = 0, updated_at = ?"
                             " WHERE app = ? AND id = ?"));
    return update.bind(now()).bind(app).bind(id).run();
}

common::Status Store::set_build_key(const std::string& app, const std::string& id,
                                    const std::string& key) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto update,
               m_db->prepare("UPDATE releases SET build_key = ? WHERE app = ? AND id = ?"));
    return update.bind(key).bind(app).bind(id).run();
}

common::Status Store::clear_build_keys(const std::string& app) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto update, m_db->prepare("UPDATE releases SET build_key = '' WHERE app = ?"));
    return update.bind(app).run();
}

common::Status Store::remove(const std::string& app, const std::string& id,
                             std::string_view detail) {
    std::lock_guard lock(m_mutex);
    sqlite::Transaction tx(*m_db);
    TRY(tx.begun());
    auto rows = query_releases("app = ? AND id = ?", {app, id});
    if (rows.empty())
        return make_error(ErrorKind::not_found, "no release " + id + " of " + app);
    TRY_ASSIGN(auto erase, m_db->prepare("DELETE FROM releases WHERE app = ? AND id = ?"));
    TRY(erase.bind(app).bind(id).run());
    TRY_ASSIGN(auto forget,
               m_db->prepare("DELETE FROM release_secrets WHERE app = ? AND release = ?"));
    TRY(forget.bind(app).bind(id).run());
    TRY_ASSIGN(auto processes,
               m_db->prepare("DELETE FROM processes WHERE app = ? AND release = ?"));
    TRY(processes.bind(app).bind(id).run());
    TRY(write_audit(app, id, name(rows.front().state), "", detail));
    return tx.commit();
}

namespace {

// Runs a SELECT and turns each result row into a T with `read`. A failure is
// logged and ends the list: readers get what was read.
template <typename T, typename Read>
std::vector<T> select_rows(sqlite::Database& db, std::string_view sql,
                           const std::vector<std::string>& params, Read read) {
    std::vector<T> rows;
    auto query = db.prepare(sql);
    if (!query) {
        common::log_error(query.error().message);
        return rows;
    }
    for (const auto& param : params)
        query->bind(param);
    auto read_all = query->each([&](const sqlite::Statement& row) { rows.push_back(read(row)); });
    if (!read_all)
        common::log_error(read_all.error().message);
    return rows;
}

} // namespace

namespace {
constexpr std::string_view k_process_columns =
    "app, release, process, instance, pid, pid_start, started_at, restarts, last_exit, port";
ProcessRow read_process(const sqlite::Statement& s) {
    return ProcessRow{s.text(0),
                      s.text(1),
                      s.text(2),
                      static_cast<int>(s.integer(3)),
                      static_cast<int>(s.integer(4)),
                      s.integer(5),
                      s.text(6),
                      static_cast<int>(s.integer(7)),
                      s.text(8),
                      static_cast<int>(s.integer(9))};
}
} // namespace

std::vector<ProcessRow> Store::processes(const std::string& app, const std::string& release) {
    std::lock_guard lock(m_mutex);
    return select_rows<ProcessRow>(*m_db,
                                   "SELECT " + std::string(k_process_columns) +
                                       " FROM processes WHERE app = ? AND release = ?"
                                       " ORDER BY process, instance",
                                   {app, release}, read_process);
}

std::vector<ProcessRow> Store::all_processes() {
    std::lock_guard lock(m_mutex);
    return select_rows<ProcessRow>(*m_db,
                                   "SELECT " + std::string(k_process_columns) +
                                       " FROM processes ORDER BY app, release, process, instance",
                                   {}, read_process);
}

std::vector<ReleaseRow> Store::query_releases(std::string_view where,
                                              const std::vector<std::string>& params) {
    std::string sql = "SELECT " + std::string(k_columns) + " FROM releases";
    if (!where.empty())
        sql += " WHERE " + std::string(where);
    sql += " ORDER BY app, seq DESC";
    return select_rows<ReleaseRow>(*m_db, sql, params, read_row);
}

common::Result<ReleaseRow> Store::get(const std::string& app, const std::string& id) {
    std::lock_guard lock(m_mutex);
    auto rows = query_releases("app = ? AND id = ?", {app, id});
    if (!rows.empty())
        return std::move(rows.front());
    return make_error(ErrorKind::not_found, "no release " + id + " of app " + app);
}

std::optional<ReleaseRow> Store::production(const std::string& app) {
    std::lock_guard lock(m_mutex);
    auto rows = query_releases("app = ? AND state = 'PRODUCTION'", {app});
    if (rows.empty())
        return std::nullopt;
    return rows.front();
}

std::vector<ReleaseRow> Store::releases(const std::string& app) {
    std::lock_guard lock(m_mutex);
    return query_releases("app = ?", {app});
}

std::optional<std::int64_t> Store::next_seq(const std::string& app) {
    std::lock_guard lock(m_mutex);
    auto next =
        select_rows<std::int64_t>(*m_db, "SELECT next_seq FROM apps WHERE name = ?", {app},
                                  [](const sqlite::Statement& row) { return row.integer(0); });
    if (next.empty())
        return std::nullopt;
    return next.front();
}

std::vector<ReleaseRow> Store::all_releases() {
    std::lock_guard lock(m_mutex);
    return query_releases({}, {});
}

std::vector<std::string> Store::apps() {
    std::lock_guard lock(m_mutex);
    return select_rows<std::string>(*m_db, "SELECT DISTINCT app FROM releases ORDER BY app", {},
                                    [](const sqlite::Statement& row) { return row.text(0); });
}

std::vector<AuditRow> Store::audit(const std::string& app) {
    std::lock_guard lock(m_mutex);
    return select_rows<AuditRow>(*m_db,
                                 "SELECT ts, app, release, from_state, to_state, detail"
                                 " FROM transitions WHERE app = ? ORDER BY rowid",
                                 {app}, [](const sqlite::Statement& row) {
                                     return AuditRow{row.text(0), row.text(1), row.text(2),
                                                     row.text(3), row.text(4), row.text(5)};
                                 });
}

std::vector<SwitchRow> Store::switches(const std::string& app) {
    std::lock_guard lock(m_mutex);
    return select_rows<SwitchRow>(
        *m_db,
        "SELECT ts, release, previous, reason FROM switches"
        " WHERE app = ? ORDER BY id",
        {app}, [](const sqlite::Statement& row) {
            return SwitchRow{row.text(0), row.text(1), row.text(2), row.text(3)};
        });
}

common::Result<bool> Store::claim_cron_due(const std::string& app, const std::string& job,
                                           const std::string& due) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto claim,
               m_db->prepare("INSERT INTO cron_jobs (app, job, last_due) VALUES (?, ?, ?)"
                             " ON CONFLICT(app, job) DO UPDATE SET last_due = excluded.last_due"
                             " WHERE last_due < excluded.last_due"));
    TRY(claim.bind(app).bind(job).bind(due).run());
    return m_db->changes() == 1;
}

common::Status Store::record_cron_run(const std::string& app, const std::string& job,
                                      const CronRunRow& run) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto record,
               m_db->prepare("INSERT INTO cron_jobs (app, job, started, finished, exit_status,"
                             " duration_ms, outcome, release) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                             " ON CONFLICT(app, job) DO UPDATE SET started = excluded.started,"
                             " finished = excluded.finished, exit_status = excluded.exit_status,"
                             " duration_ms = excluded.duration_ms, outcome = excluded.outcome,"
                             " release = excluded.release"));
    record.bind(app).bind(job).bind(run.started).bind(run.finished).bind(run.exit_status);
    record.bind(run.duration_ms).bind(run.outcome).bind(run.release);
    return record.run();
}

std::vector<CronRunRow> Store::cron_jobs(const std::string& app) {
    std::lock_guard lock(m_mutex);
    return select_rows<CronRunRow>(
        *m_db,
        "SELECT job, last_due, started, finished, exit_status, duration_ms, outcome, release"
        " FROM cron_jobs WHERE app = ? ORDER BY job",
        {app}, [](const sqlite::Statement& row) {
            CronRunRow r;
            r.job = row.text(0);
            r.last_due = row.text(1);
            r.started = row.text(2);
            r.finished = row.text(3);
            r.exit_status = row.integer(4);
            r.duration_ms = row.integer(5);
            r.outcome = row.text(6);
            r.release = row.text(7);
            return r;
        });
}

common::Status Store::set_cron_process(const std::string& app, const std::string& job, int pid,
                                       std::int64_t pid_start) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto update,
               m_db->prepare("INSERT INTO cron_jobs (app, job, pid, pid_start) VALUES (?, ?, ?, ?)"
                             " ON CONFLICT(app, job) DO UPDATE SET pid = excluded.pid,"
                             " pid_start = excluded.pid_start"));
    return update.bind(app).bind(job).bind(pid).bind(pid_start).run();
}

std::vector<CronProcess> Store::cron_processes() {
    std::lock_guard lock(m_mutex);
    return select_rows<CronProcess>(
        *m_db, "SELECT app, job, pid, pid_start FROM cron_jobs WHERE pid != 0 ORDER BY app, job",
        {}, [](const sqlite::Statement& row) {
            return CronProcess{row.text(0), row.text(1), static_cast<int>(row.integer(2)),
                               row.integer(3)};
        });
}

std::vector<EnvRow> Store::env(const std::string& app) {
    std::lock_guard lock(m_mutex);
    return select_rows<EnvRow>(
        *m_db,
        "SELECT name, secret, value, updated_at FROM env WHERE app = ?"
        " ORDER BY name",
        {app}, [](const sqlite::Statement& row) {
            return EnvRow{row.text(0), row.integer(1) != 0, row.text(2), row.text(3)};
        });
}

std::optional<std::string> Store::data_key(const std::string& app) {
    std::lock_guard lock(m_mutex);
    auto keys = select_rows<std::string>(*m_db, "SELECT wrapped FROM app_keys WHERE app = ?", {app},
                                         [](const sqlite::Statement& row) { return row.text(0); });
    if (keys.empty())
        return std::nullopt;
    return keys.front();
}

bool Store::has_data_keys() {
    std::lock_guard lock(m_mutex);
    return !select_rows<std::string>(*m_db, "SELECT app FROM app_keys LIMIT 1", {},
                                     [](const sqlite::Statement& row) { return row.text(0); })
                .empty();
}

common::Status Store::put_env(const std::string& app, const std::vector<EnvRow>& rows,
                              const std::optional<std::string>& wrapped_key) {
    std::lock_guard lock(m_mutex);
    sqlite::Transaction tx(*m_db);
    TRY(tx.begun());
    TRY(insert_app_key(*m_db, app, wrapped_key));
    for (const auto& row : rows) {
        TRY_ASSIGN(auto upsert,
                   m_db->prepare("INSERT OR REPLACE INTO env (app, name, secret, value,"
                                 " updated_at) VALUES (?, ?, ?, ?, ?)"));
        upsert.bind(app).bind(row.name).bind(row.secret ? 1 : 0).bind(row.value).bind(now());
        TRY(upsert.run());
    }
    return tx.commit();
}

common::Status Store::remove_env(const std::string& app, const std::vector<std::string>& names) {
    std::lock_guard lock(m_mutex);
    sqlite::Transaction tx(*m_db);
    TRY(tx.begun());
    for (const auto& name : names) {
        TRY_ASSIGN(auto erase, m_db->prepare("DELETE FROM env WHERE app = ? AND name = ?"));
        TRY(erase.bind(app).bind(name).run());
        if (m_db->changes() != 1)
            return make_error(ErrorKind::not_found,
                              "no variable " + name + " is set for app " + app);
    }
    return tx.commit();
}

common::Status Store::snapshot_secrets(const std::string& app, const std::string& id) {
    std::lock_guard lock(m_mutex);
    sqlite::Transaction tx(*m_db);
    TRY(tx.begun());
    TRY_ASSIGN(auto clear,
               m_db->prepare("DELETE FROM release_secrets WHERE app = ? AND release = ?"));
    TRY(clear.bind(app).bind(id).run());
    TRY_ASSIGN(auto copy,
               m_db->prepare("INSERT INTO release_secrets (app, release, name, value)"
                             " SELECT app, ?, name, value FROM env WHERE app = ? AND secret = 1"));
    TRY(copy.bind(id).bind(app).run());
    return tx.commit();
}

std::vector<EnvRow> Store::release_secrets(const std::string& app, const std::string& id) {
    std::lock_guard lock(m_mutex);
    return select_rows<EnvRow>(
        *m_db, "SELECT name, value FROM release_secrets WHERE app = ? AND release = ?", {app, id},
        [](const sqlite::Statement& row) {
            return EnvRow{row.text(0), true, row.text(1), {}};
        });
}

bool Store::stopped(const std::string& app) {
    std::lock_guard lock(m_mutex);
    auto rows = select_rows<bool>(*m_db, "SELECT stopped FROM apps WHERE name = ?", {app},
                                  [](const sqlite::Statement& row) { return row.integer(0) != 0; });
    return !rows.empty() && rows.front();
}

std::map<std::string, int> Store::scale(const std::string& app) {
    std::lock_guard lock(m_mutex);
    std::map<std::string, int> counts;
    for (auto& [process, count] : select_rows<std::pair<std::string, int>>(
             *m_db, "SELECT process, count FROM scale WHERE app = ?", {app},
             [](const sqlite::Statement& row) {
                 return std::pair{row.text(0), static_cast<int>(row.integer(1))};
             }))
        counts[process] = count;
    return counts;
}

common::Status Store::set_scale(const std::string& app, const std::map<std::string, int>& counts,
                                std::string_view detail) {
    std::lock_guard lock(m_mutex);
    sqlite::Transaction tx(*m_db);
    TRY(tx.begun());
    for (const auto& [process, count] : counts) {
        TRY_ASSIGN(auto put, m_db->prepare("INSERT OR REPLACE INTO scale (app, process, count)"
                                           " VALUES (?, ?, ?)"));
        TRY(put.bind(app).bind(process).bind(count).run());
    }
    auto production = query_releases("app = ? AND state = 'PRODUCTION'", {app});
    TRY(write_audit(app, production.empty() ? std::string() : production.front().id, "", "",
                    detail));
    return tx.commit();
}

common::Status Store::set_stopped(const std::string& app, bool stopped, std::string_view detail) {
    std::lock_guard lock(m_mutex);
    sqlite::Transaction tx(*m_db);
    TRY(tx.begun());
    TRY_ASSIGN(auto update, m_db->prepare("UPDATE apps SET stopped = ? WHERE name = ?"));
    TRY(update.bind(stopped ? 1 : 0).bind(app).run());
    if (m_db->changes() != 1)
        return make_error(ErrorKind::not_found, "no app named " + app);
    auto production = query_releases("app = ? AND state = 'PRODUCTION'", {app});
    const std::string id = production.empty() ? std::string() : production.front().id;
    TRY(write_audit(app, id, "", "", detail)); // no state changes: from and to stay empty
    return tx.commit();
}

Traffic Store::traffic(const std::string& app) {
    std::lock_guard lock(m_mutex);
    auto rows = select_rows<Traffic>(
        *m_db,
        "SELECT maintenance, message, retry_after, maintenance_since, paused, pause_timeout_ms,"
        " paused_since, sleeping FROM traffic WHERE app = ?",
        {app}, [](const sqlite::Statement& row) {
            return Traffic{row.integer(0) != 0, row.text(1),         row.integer(2),
                           row.text(3),         row.integer(4) != 0, row.integer(5),
                           row.text(6),         row.integer(7) != 0};
        });
    return rows.empty() ? Traffic{} : rows.front();
}

common::Status Store::set_traffic(const std::string& app, std::string_view sql,
                                  const std::function<void(sqlite::Statement&)>& bind,
                                  std::string_view detail) {
    std::lock_guard lock(m_mutex);
    sqlite::Transaction tx(*m_db);
    TRY(tx.begun());
    TRY_ASSIGN(auto known, m_db->prepare("SELECT 1 FROM apps WHERE name = ?"));
    known.bind(app);
    TRY_ASSIGN(const bool found, known.step());
    if (!found)
        return make_error(ErrorKind::not_found, "no app named " + app);
    TRY_ASSIGN(auto ensure, m_db->prepare("INSERT OR IGNORE INTO traffic (app) VALUES (?)"));
    TRY(ensure.bind(app).run());
    TRY_ASSIGN(auto update, m_db->prepare(sql));
    bind(update);
    TRY(update.bind(app).run());
    auto production = query_releases("app = ? AND state = 'PRODUCTION'", {app});
    TRY(write_audit(app, production.empty() ? std::string() : production.front().id, "", "",
                    detail));
    return tx.commit();
}

common::Status Store::set_maintenance(const std::string& app, bool on, const std::string& message,
                                      std::int64_t retry_after, std::string_view detail) {
    const std::string since = on ? now() : std::string();
    return set_traffic(
        app,
        "UPDATE traffic SET maintenance = ?, message = ?, retry_after = ?, maintenance_since ="
        " CASE WHEN maintenance = 1 AND ? = 1 THEN maintenance_since ELSE ? END WHERE app = ?",
        [&](sqlite::Statement& update) {
            update.bind(on ? 1 : 0)
                .bind(on ? message : std::string())
                .bind(on ? retry_after : 0)
                .bind(on ? 1 : 0)
                .bind(since);
        },
        detail);
}

common::Status Store::set_paused(const std::string& app, bool on, std::int64_t timeout_ms,
                                 std::string_view detail) {
    const std::string since = on ? now() : std::string();
    return set_traffic(
        app,
        "UPDATE traffic SET paused = ?, pause_timeout_ms = ?, paused_since ="
        " CASE WHEN paused = 1 AND ? = 1 THEN paused_since ELSE ? END WHERE app = ?",
        [&](sqlite::Statement& update) {
            update.bind(on ? 1 : 0).bind(on ? timeout_ms : 0).bind(on ? 1 : 0).bind(since);
        },
        detail);
}

common::Status Store::set_sleeping(const std::string& app, bool on) {
    std::lock_guard lock(m_mutex);
    sqlite::Transaction tx(*m_db);
    TRY(tx.begun());
    TRY_ASSIGN(auto ensure, m_db->prepare("INSERT OR IGNORE INTO traffic (app)"
                                          " SELECT name FROM apps WHERE name = ?"));
    TRY(ensure.bind(app).run());
    TRY_ASSIGN(auto update, m_db->prepare("UPDATE traffic SET sleeping = ? WHERE app = ?"));
    TRY(update.bind(on ? 1 : 0).bind(app).run());
    return tx.commit();
}

common::Status Store::put_hook_secret(const std::string& app, const std::string& sealed,
                                      const std::optional<std::string>& wrapped_key) {
    std::lock_guard lock(m_mutex);
    sqlite::Transaction tx(*m_db);
    TRY(tx.begun());
    TRY(insert_app_key(*m_db, app, wrapped_key));
    TRY_ASSIGN(auto insert, m_db->prepare("INSERT OR REPLACE INTO hook_secrets (app, sealed, "
                                          "created_at) VALUES (?, ?, ?)"));
    TRY(insert.bind(app).bind(sealed).bind(now()).run());
    return tx.commit();
}

std::optional<std::string> Store::hook_secret(const std::string& app) {
    std::lock_guard lock(m_mutex);
    auto rows =
        select_rows<std::string>(*m_db, "SELECT sealed FROM hook_secrets WHERE app = ?", {app},
                                 [](const sqlite::Statement& row) { return row.text(0); });
    if (rows.empty())
        return std::nullopt;
    return rows.front();
}

namespace {
constexpr int k_deliveries_kept = 200;
constexpr const char* k_delivery_columns =
    "app, provider, delivery, received_at, event, ref, commit_id, release, result, detail";
DeliveryRow delivery_row(const sqlite::Statement& row) {
    return DeliveryRow{row.text(0), row.text(1), row.text(2), row.text(3), row.text(4),
                       row.text(5), row.text(6), row.text(7), row.text(8), row.text(9)};
}
} // namespace

common::Result<bool> Store::add_delivery(const DeliveryRow& row) {
    std::lock_guard lock(m_mutex);
    sqlite::Transaction tx(*m_db);
    TRY(tx.begun());
    TRY_ASSIGN(auto insert,
               m_db->prepare(fmt::format("INSERT OR IGNORE INTO hook_deliveries ({}) VALUES "
                                         "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                         k_delivery_columns)));
    TRY(insert.bind(row.app)
            .bind(row.provider)
            .bind(row.delivery)
            .bind(now())
            .bind(row.event)
            .bind(row.ref)
            .bind(row.commit)
            .bind(row.release)
            .bind(row.result)
            .bind(row.detail)
            .run());
    if (m_db->changes() == 0)
        return false;
    TRY_ASSIGN(auto trim,
               m_db->prepare("DELETE FROM hook_deliveries WHERE app = ? AND rowid NOT IN (SELECT "
                             "rowid FROM hook_deliveries WHERE app = ? ORDER BY received_at "
                             "DESC, rowid DESC LIMIT ?)"));
    TRY(trim.bind(row.app).bind(row.app).bind(k_deliveries_kept).run());
    TRY(tx.commit());
    return true;
}

common::Status Store::finish_delivery(const DeliveryRow& row) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto update,
               m_db->prepare("UPDATE hook_deliveries SET ref = ?, commit_id = ?, release = ?, "
                             "result = ?, detail = ? WHERE app = ? AND provider = ? AND "
                             "delivery = ?"));
    return update.bind(row.ref)
        .bind(row.commit)
        .bind(row.release)
        .bind(row.result)
        .bind(row.detail)
        .bind(row.app)
        .bind(row.provider)
        .bind(row.delivery)
        .run();
}

std::optional<DeliveryRow> Store::delivery(const std::string& app, const std::string& provider,
                                           const std::string& delivery) {
    std::lock_guard lock(m_mutex);
    auto rows = select_rows<DeliveryRow>(
        *m_db,
        fmt::format("SELECT {} FROM hook_deliveries WHERE app = ? AND provider = ? AND "
                    "delivery = ?",
                    k_delivery_columns),
        {app, provider, delivery}, delivery_row);
    if (rows.empty())
        return std::nullopt;
    return rows.front();
}

std::vector<DeliveryRow> Store::deliveries(const std::string& app, int limit) {
    std::lock_guard lock(m_mutex);
    return select_rows<DeliveryRow>(
        *m_db,
        fmt::format("SELECT {} FROM hook_deliveries WHERE app = ? ORDER BY received_at DESC, "
                    "rowid DESC LIMIT {}",
                    k_delivery_columns, std::max(1, limit)),
        {app}, delivery_row);
}

namespace {
constexpr const char* k_preview_columns = "app, number, preview_app, provider, ref, commit_id, "
                                          "release, closing, detail, created_at, updated_at";
PreviewRow preview_row(const sqlite::Statement& row) {
    return PreviewRow{row.text(0), static_cast<int>(row.integer(1)),
                      row.text(2), row.text(3),
                      row.text(4), row.text(5),
                      row.text(6), row.integer(7) != 0,
                      row.text(8), row.text(9),
                      row.text(10)};
}
} // namespace

common::Status Store::put_preview(const PreviewRow& row) {
    std::lock_guard lock(m_mutex);
    const auto time = now();
    TRY_ASSIGN(auto upsert,
               m_db->prepare(fmt::format(
                   "INSERT INTO previews ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON "
                   "CONFLICT(app, number) DO UPDATE SET provider = excluded.provider, ref = "
                   "excluded.ref, commit_id = excluded.commit_id, release = excluded.release, "
                   "closing = excluded.closing, detail = excluded.detail, updated_at = "
                   "excluded.updated_at",
                   k_preview_columns)));
    return upsert.bind(row.app)
        .bind(row.number)
        .bind(row.preview_app)
        .bind(row.provider)
        .bind(row.ref)
        .bind(row.commit)
        .bind(row.release)
        .bind(row.closing ? 1 : 0)
        .bind(row.detail)
        .bind(time)
        .bind(time)
        .run();
}

std::vector<PreviewRow> Store::previews(const std::string& app) {
    std::lock_guard lock(m_mutex);
    return select_rows<PreviewRow>(
        *m_db,
        fmt::format("SELECT {} FROM previews WHERE app = ? ORDER BY created_at, rowid",
                    k_preview_columns),
        {app}, preview_row);
}

common::Status Store::remove_preview(const std::string& app, int number) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto erase, m_db->prepare("DELETE FROM previews WHERE app = ? AND number = ?"));
    return erase.bind(app).bind(number).run();
}

common::Status Store::put_git_key(const std::string& app, const GitKeyRow& row,
                                  const std::optional<std::string>& wrapped_key) {
    std::lock_guard lock(m_mutex);
    sqlite::Transaction tx(*m_db);
    TRY(tx.begun());
    TRY(insert_app_key(*m_db, app, wrapped_key));
    TRY_ASSIGN(auto insert, m_db->prepare("INSERT OR REPLACE INTO git_keys (app, sealed, "
                                          "public_key, created_at) VALUES (?, ?, ?, ?)"));
    TRY(insert.bind(app).bind(row.sealed).bind(row.public_key).bind(now()).run());
    return tx.commit();
}

std::optional<GitKeyRow> Store::git_key(const std::string& app) {
    std::lock_guard lock(m_mutex);
    auto rows = select_rows<GitKeyRow>(
        *m_db, "SELECT sealed, public_key, created_at FROM git_keys WHERE app = ?", {app},
        [](const sqlite::Statement& row) {
            return GitKeyRow{row.text(0), row.text(1), row.text(2)};
        });
    if (rows.empty())
        return std::nullopt;
    return rows.front();
}

std::vector<GitHostRow> Store::git_hosts(const std::string& app) {
    std::lock_guard lock(m_mutex);
    return select_rows<GitHostRow>(
        *m_db, "SELECT host, key, added_at FROM git_hosts WHERE app = ? ORDER BY host", {app},
        [](const sqlite::Statement& row) {
            return GitHostRow{row.text(0), row.text(1), row.text(2)};
        });
}

common::Status Store::add_git_host(const std::string& app, const std::string& host,
                                   const std::string& key) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto insert, m_db->prepare("INSERT OR IGNORE INTO git_hosts (app, host, key, "
                                          "added_at) VALUES (?, ?, ?, ?)"));
    return insert.bind(app).bind(host).bind(key).bind(now()).run();
}

common::Status Store::forget_git_hosts(const std::string& app) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto erase, m_db->prepare("DELETE FROM git_hosts WHERE app = ?"));
    return erase.bind(app).run();
}

common::Status Store::put_canary(const CanaryRow& row) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto insert,
               m_db->prepare("INSERT OR REPLACE INTO canaries (app, release, percent, auto_at,"
                             " max_error_bp, created_at) VALUES (?, ?, ?, ?, ?, ?)"));
    return insert.bind(row.app)
        .bind(row.release)
        .bind(row.percent)
        .bind(row.auto_at)
        .bind(row.max_error_bp)
        .bind(now())
        .run();
}

namespace {
CanaryRow canary_row(const sqlite::Statement& row) {
    return CanaryRow{row.text(0), row.text(1), static_cast<int>(row.integer(2)), row.integer(3),
                     static_cast<int>(row.integer(4))};
}
} // namespace

std::optional<CanaryRow> Store::canary(const std::string& app) {
    std::lock_guard lock(m_mutex);
    auto rows = select_rows<CanaryRow>(
        *m_db, "SELECT app, release, percent, auto_at, max_error_bp FROM canaries WHERE app = ?",
        {app}, canary_row);
    if (rows.empty())
        return std::nullopt;
    return rows.front();
}

std::vector<CanaryRow> Store::canaries() {
    std::lock_guard lock(m_mutex);
    return select_rows<CanaryRow>(
        *m_db, "SELECT app, release, percent, auto_at, max_error_bp FROM canaries ORDER BY app", {},
        canary_row);
}

common::Status Store::remove_canary(const std::string& app) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto erase, m_db->prepare("DELETE FROM canaries WHERE app = ?"));
    return erase.bind(app).run();
}

common::Status Store::destroy_app(const std::string& app, std::string_view detail) {
    std::lock_guard lock(m_mutex);
    sqlite::Transaction tx(*m_db);
    TRY(tx.begun());
    for (std::string_view sql :
         {"DELETE FROM releases WHERE app = ?", "DELETE FROM release_secrets WHERE app = ?",
          "DELETE FROM env WHERE app = ?", "DELETE FROM app_keys WHERE app = ?",
          "DELETE FROM switches WHERE app = ?", "DELETE FROM processes WHERE app = ?",
          "DELETE FROM cron_jobs WHERE app = ?", "DELETE FROM scale WHERE app = ?",
          "DELETE FROM traffic WHERE app = ?", "DELETE FROM canaries WHERE app = ?",
          "DELETE FROM hook_secrets WHERE app = ?", "DELETE FROM hook_deliveries WHERE app = ?",
          "DELETE FROM previews WHERE app = ?", "DELETE FROM previews WHERE preview_app = ?",
          "DELETE FROM git_keys WHERE app = ?", "DELETE FROM git_hosts WHERE app = ?",
          "DELETE FROM apps WHERE name = ?"}) {
        TRY_ASSIGN(auto erase, m_db->prepare(sql));
        TRY(erase.bind(app).run());
    }
    TRY(write_audit(app, "", "", "", detail));
    return tx.commit();
}

common::Status Store::exec(std::string_view sql) {
    std::lock_guard lock(m_mutex);
    return m_db->exec(sql);
}

} // namespace agent
