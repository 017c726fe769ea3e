// sqlite_db.h — thin RAII over the SQLite C API, private to the SQLite store.
//
// Connection owns a sqlite3 handle; Statement owns a prepared statement and resets itself when
// a Step goes out of scope, so a statement is never left mid-iteration. Every SQLite result code
// that is not success becomes a named choreo::Status through sqlite_status(), in one place.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "choreo/assert.h"
#include "choreo/bytes.h"
#include "choreo/status.h"

namespace choreo::sqlite {

// Maps an SQLite result code to the Store contract (choreo/store.h):
//   busy, locked, protocol       -> transient   "store_busy"
//   full                         -> failed_precondition "store_full"
//   notadb                       -> failed_precondition "not_a_choreo_database"
//   readonly, cantopen, perm     -> failed_precondition "store_not_writable" / "store_cannot_open"
//   corrupt                      -> failed_precondition "store_corrupt"
//   constraint                   -> failed_precondition "store_constraint" (callers that expect
//                                   one, like a dedup insert, name it themselves)
//   ioerr and everything else    -> failed_precondition "store_io_error" / "store_error"
// `what` says what was being done; the SQLite message is appended.
Status sqlite_status(int code, std::string_view what, sqlite3* db);

class Connection {
public:
    Connection() = default;
    explicit Connection(sqlite3* db) : db_(db) {}
    ~Connection() { close(); }
    Connection(Connection&& other) noexcept : db_(other.db_) { other.db_ = nullptr; }
    Connection& operator=(Connection&& other) noexcept;
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    sqlite3* get() const { return db_; }
    explicit operator bool() const { return db_ != nullptr; }
    void close();
    // Runs SQL without results (DDL, pragmas that return nothing, BEGIN/COMMIT).
    Status exec(const char* sql, std::string_view what);

private:
    sqlite3* db_ = nullptr;
};

class Statement {
public:
    Statement() = default;
    ~Statement();
    Statement(Statement&& other) noexcept : stmt_(other.stmt_) { other.stmt_ = nullptr; }
    Statement& operator=(Statement&& other) noexcept;
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    static Result<Statement> prepare(sqlite3* db, std::string_view sql);

    // Binding: 1-based parameter indexes, as SQLite counts them. Text and blobs are copied
    // (SQLITE_TRANSIENT) only when the statement outlives the argument; here every step
    // happens before the argument goes, so they are bound SQLITE_STATIC.
    void bind(int index, std::int64_t value);
    void bind(int index, std::string_view text);
    void bind(int index, ByteView blob);
    void bind_null(int index);

    // Steps once: true when a row is ready, false when done.
    Result<bool> step(std::string_view what);
    // Steps to the end, for statements without rows.
    Status run(std::string_view what);
    void reset();

    std::int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
    std::string text(int column) const;
    Bytes blob(int column) const;
    bool is_null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
    int changes() const { return sqlite3_changes(sqlite3_db_handle(stmt_)); }

private:
    explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
    sqlite3_stmt* stmt_ = nullptr;
};

// Resets the statement (and clears its bindings) when it leaves scope: every use of a cached
// statement goes through one, so a failed step never leaves a statement holding a read lock.
class Use {
public:
    explicit Use(Statement& statement) : statement_(statement) {}
    ~Use() { statement_.reset(); }
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;
    Statement* operator->() { return &statement_; }
    Statement& operator*() { return statement_; }

private:
    Statement& statement_;
};

}  // namespace choreo::sqlite
