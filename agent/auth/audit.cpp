// The audit half of AuthStore: one row per mutating API call, and one per
// address and minute of failed logins (count: how many).

#include <agent/auth/auth_store.hpp>
#include <agent/store/sqlite.hpp>

#include <algorithm>
#include <string>

namespace agent::auth {

common::Status AuthStore::record(const AuditEntry& e) {
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto insert, m_db->prepare("INSERT INTO api_audit (ts, who, token_name, method, "
                                          "path, app, release, status, result,"
                                          " error_code, count, command)"
                                          " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"));
    insert.bind(e.ts.empty() ? format_time(std::chrono::system_clock::now()) : e.ts)
        .bind(e.who)
        .bind(e.token_name)
        .bind(e.method)
        .bind(e.path)
        .bind(e.app)
        .bind(e.release)
        .bind(e.status)
        .bind(e.result)
        .bind(e.error_code)
        .bind(e.count)
        .bind(e.command);
    return insert.run();
}

common::Result<std::vector<AuditEntry>> AuthStore::audit(const AuditQuery& q) {
    std::string sql = "SELECT id, ts, who, token_name, method, path, app, release, status, "
                      "result, error_code, count, command FROM api_audit WHERE 1";
    if (!q.app.empty())
        sql += " AND app = ?";
    if (!q.since.empty())
        sql += " AND ts >= ?";
    sql += " ORDER BY id DESC LIMIT ?";
    std::lock_guard lock(m_mutex);
    TRY_ASSIGN(auto query, m_db->prepare(sql));
    if (!q.app.empty())
        query.bind(q.app);
    if (!q.since.empty())
        query.bind(q.since);
    query.bind(std::max(q.limit, 0));
    std::vector<AuditEntry> entries;
    TRY(query.each([&](const sqlite::Statement& s) {
        entries.push_back(AuditEntry{
            s.integer(0), s.text(1), s.text(2), s.text(3), s.text(4), s.text(5), s.text(6),
            s.text(7), static_cast<int>(s.integer(8)), s.text(9), s.text(10), s.integer(11),
            s.text(12)});
    }));
    return entries;
}

} // namespace agent::auth
