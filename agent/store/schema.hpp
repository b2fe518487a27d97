#pragma once
// The one owner of state.db's schema: numbered migrations, applied in order,
// each in a transaction of its own that also sets PRAGMA user_version to its
// number. Store::open and auth::AuthStore::open both call migrate(): either
// may open the file first (`deploy-agent token create` before the agent ever
// started), and both may do so at once.
//
// To change the schema: append a Migration to k_migrations in schema.cpp (SQL,
// and a function for what SQL cannot do), raise k_latest_version to its
// number, and extend tests/unit/test_agent_store_schema.cpp; never edit a
// migration that has shipped.

#include <common/result.hpp>

namespace agent::sqlite {
class Database;
}

namespace agent::schema {

// The number of the last migration: the user_version of an up-to-date state.db.
inline constexpr int k_latest_version = 15;

// Applies the migrations above the database's user_version. Each one runs
// under BEGIN IMMEDIATE and reads the version again inside, so of two
// processes migrating the same file, the second finds the work done.
// ErrorKind::internal for a database newer than this agent.
common::Status migrate(sqlite::Database& db);

// The database's PRAGMA user_version.
common::Result<int> version(sqlite::Database& db);

} // namespace agent::schema
