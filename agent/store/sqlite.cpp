#include <agent/store/sqlite.hpp>
#include <common/fs.hpp>
#include <common/log.hpp>

#include <sqlite3.h>

namespace agent::sqlite {

using common::ErrorKind;
using common::make_error;

namespace {
// SQLite's message; for a failed file operation also the system's error
// ("disk I/O error (Input/output error)", "database or disk is full (No space
// left on device: the disk is full ...)").
std::string message_of(sqlite3* db) {
    std::string message = sqlite3_errmsg(db);
    const int code = sqlite3_errcode(db) & 0xff;
    const int os_error = sqlite3_system_errno(db);
    if (os_error != 0 && (code == SQLITE_IOERR || code == SQLITE_FULL || code == SQLITE_CANTOPEN))
        message += " (" + common::os_error_text(os_error) + ")";
    return message;
}

// disk_full when the database could not grow (deployctl exits 6), else io.
ErrorKind kind_of(sqlite3* db) {
    const int code = sqlite3_errcode(db) & 0xff;
    return code == SQLITE_FULL ? ErrorKind::disk_full
                               : common::io_error_kind(sqlite3_system_errno(db));
}

common::Error db_error(sqlite3* db, std::string_view what) {
    return make_error(kind_of(db), std::string(what) + ": " + message_of(db));
}
} // namespace

common::Result<std::unique_ptr<Database>> Database::open(const std::filesystem::path& path) {
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &raw,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                             nullptr);
    std::unique_ptr<Database> db(new Database(raw));
    if (rc != SQLITE_OK)
        return make_error(ErrorKind::io, "cannot open " + path.string() + ": " +
                                             (raw ? message_of(raw) : "out of memory"));
    sqlite3_busy_timeout(raw, 5000);
    // The WAL is checkpointed every 256 pages (1 MiB) instead of 1000, and cut
    // back to 512 KiB after each checkpoint instead of keeping its high-water
    // mark for good: the state is small, its WAL need not be 4 MiB.
    TRY(db->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; "
                 "PRAGMA wal_autocheckpoint=256; PRAGMA journal_size_limit=524288;"));
    return db;
}

Database::~Database() {
    if (m_db)
        sqlite3_close_v2(m_db);
}

common::Status Database::exec(std::string_view sql) {
    char* message = nullptr;
    std::string text(sql);
    if (sqlite3_exec(m_db, text.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
        std::string error = message ? message : sqlite3_errmsg(m_db);
        sqlite3_free(message);
        const int code = sqlite3_errcode(m_db) & 0xff;
        if (const int os_error = sqlite3_system_errno(m_db);
            os_error != 0 && (code == SQLITE_IOERR || code == SQLITE_FULL))
            error += " (" + common::os_error_text(os_error) + ")";
        return make_error(kind_of(m_db), "database: " + error);
    }
    return {};
}

common::Result<Statement> Database::prepare(std::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(m_db, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) !=
        SQLITE_OK)
        return db_error(m_db, "database: cannot prepare statement");
    return Statement(stmt);
}

int Database::changes() const {
    return sqlite3_changes(m_db);
}

std::string Database::last_error() const {
    return message_of(m_db);
}

Statement::~Statement() {
    if (m_stmt)
        sqlite3_finalize(m_stmt);
}

Statement& Statement::bind(std::string_view text) {
    // An empty string_view may have a null data(): that would bind NULL, not ''.
    const char* data = text.data() ? text.data() : "";
    sqlite3_bind_text(m_stmt, m_next_param++, data, static_cast<int>(text.size()),
                      SQLITE_TRANSIENT);
    return *this;
}

Statement& Statement::bind(std::int64_t number) {
    sqlite3_bind_int64(m_stmt, m_next_param++, number);
    return *this;
}

common::Result<bool> Statement::step() {
    int rc = sqlite3_step(m_stmt);
    if (rc == SQLITE_ROW)
        return true;
    if (rc == SQLITE_DONE)
        return false;
    return db_error(sqlite3_db_handle(m_stmt), "database");
}

common::Status Statement::run() {
    return each([](const Statement&) {});
}

std::string Statement::text(int column) const {
    const unsigned char* value = sqlite3_column_text(m_stmt, column);
    return value ? reinterpret_cast<const char*>(value) : "";
}

std::int64_t Statement::integer(int column) const {
    return sqlite3_column_int64(m_stmt, column);
}

Transaction::Transaction(Database& db) : m_db(db), m_begun(db.exec("BEGIN IMMEDIATE")) {}

Transaction::~Transaction() {
    if (m_done || !m_begun)
        return;
    auto rolled_back = m_db.exec("ROLLBACK");
    if (!rolled_back)
        common::log_error("rollback failed: " + rolled_back.error().message);
}

common::Status Transaction::commit() {
    auto committed = m_db.exec("COMMIT");
    if (committed)
        m_done = true; // else the destructor rolls back
    return committed;
}

} // namespace agent::sqlite
