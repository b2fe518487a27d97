#pragma once
// A thin RAII layer over the SQLite C API: one connection, prepared statements.
// Used by the store, its schema and the auth store; keeps sqlite3.h out of
// every other file.

#include <common/result.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

struct sqlite3;
struct sqlite3_stmt;

namespace agent::sqlite {

class Statement;

class Database {
  public:
    static common::Result<std::unique_ptr<Database>> open(const std::filesystem::path& path);
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    // Runs one or more statements without results.
    common::Status exec(std::string_view sql);
    common::Result<Statement> prepare(std::string_view sql);
    // Rows changed by the last INSERT/UPDATE/DELETE.
    int changes() const;
    std::string last_error() const;

  private:
    explicit Database(sqlite3* db) : m_db(db) {}
    sqlite3* m_db;
};

class Statement {
  public:
    explicit Statement(sqlite3_stmt* stmt) : m_stmt(stmt) {}
    ~Statement();
    Statement(Statement&& other) noexcept : m_stmt(other.m_stmt) { other.m_stmt = nullptr; }
    Statement& operator=(Statement&&) = delete;
    Statement(const Statement&) = delete;

    // Binds parameters 1..N in order.
    Statement& bind(std::string_view text);
    Statement& bind(std::int64_t number);
    Statement& bind(int number) { return bind(static_cast<std::int64_t>(number)); }

    // Advances: true when a row is available, false when done; errors throw nothing
    // but are reported through `error()`.
    common::Result<bool> step();
    // Steps through every row, calling `on_row(const Statement&)` on each; the
    // first error ends it and is returned.
    template <class OnRow> common::Status each(OnRow&& on_row) {
        for (;;) {
            TRY_ASSIGN(const bool has_row, step());
            if (!has_row)
                return {};
            on_row(std::as_const(*this));
        }
    }
    // Steps until done (for statements without rows).
    common::Status run();

    std::string text(int column) const;
    std::int64_t integer(int column) const;

  private:
    sqlite3_stmt* m_stmt;
    int m_next_param = 1;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back unless commit() was called.
class Transaction {
  public:
    explicit Transaction(Database& db);
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    const common::Status& begun() const { return m_begun; }
    common::Status commit();

  private:
    Database& m_db;
    common::Status m_begun;
    bool m_done = false;
};

} // namespace agent::sqlite
