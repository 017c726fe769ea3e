#include "sqlite_db.h"

#include <utility>

namespace choreo::sqlite {

namespace {

std::string describe(int code, std::string_view what, sqlite3* db) {
    std::string message{what};
    message += ": ";
    // The connection's message is the specific one ("database or disk is full", "no such table"),
    // when it belongs to this code; otherwise the generic text of the code.
    const bool connection_knows = db != nullptr && sqlite3_extended_errcode(db) == code;
    message += connection_knows ? sqlite3_errmsg(db) : sqlite3_errstr(code);
    message += " (sqlite " + std::to_string(code) + ")";
    return message;
}

}  // namespace

Status sqlite_status(int code, std::string_view what, sqlite3* db) {
    CHOREO_ASSERT(code != SQLITE_OK && code != SQLITE_ROW && code != SQLITE_DONE);
    std::string message = describe(code, what, db);
    switch (code & 0xFF) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
        case SQLITE_PROTOCOL: return transient_error("store_busy", std::move(message));
        case SQLITE_FULL: return precondition_error("store_full", std::move(message));
        case SQLITE_NOTADB: return precondition_error("not_a_choreo_database", std::move(message));
        case SQLITE_READONLY:
        case SQLITE_PERM: return precondition_error("store_not_writable", std::move(message));
        case SQLITE_CANTOPEN: return precondition_error("store_cannot_open", std::move(message));
        case SQLITE_CORRUPT: return precondition_error("store_corrupt", std::move(message));
        case SQLITE_IOERR: return precondition_error("store_io_error", std::move(message));
        case SQLITE_CONSTRAINT: return precondition_error("store_constraint", std::move(message));
        default: return precondition_error("store_error", std::move(message));
    }
}

Connection& Connection::operator=(Connection&& other) noexcept {
    if (this != &other) {
        close();
        db_ = std::exchange(other.db_, nullptr);
    }
    return *this;
}

void Connection::close() {
    if (db_ == nullptr) return;
    // Every statement is finalized before its connection closes (the store's member order), so
    // close_v2 frees the handle now.
    sqlite3_close_v2(db_);
    db_ = nullptr;
}

Status Connection::exec(const char* sql, std::string_view what) {
    CHOREO_ASSERT(db_ != nullptr);
    const int code = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    if (code != SQLITE_OK) return sqlite_status(code, what, db_);
    return Status{};
}

Statement::~Statement() {
    if (stmt_ != nullptr) sqlite3_finalize(stmt_);
}

Statement& Statement::operator=(Statement&& other) noexcept {
    if (this != &other) {
        if (stmt_ != nullptr) sqlite3_finalize(stmt_);
        stmt_ = std::exchange(other.stmt_, nullptr);
    }
    return *this;
}

Result<Statement> Statement::prepare(sqlite3* db, std::string_view sql) {
    CHOREO_ASSERT(db != nullptr);
    sqlite3_stmt* stmt = nullptr;
    const int code = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                        &stmt, nullptr);
    if (code != SQLITE_OK) {
        if (stmt != nullptr) sqlite3_finalize(stmt);
        return sqlite_status(code, "prepare " + std::string(sql.substr(0, 60)), db);
    }
    CHOREO_ASSERT(stmt != nullptr);
    return Statement{stmt};
}

void Statement::bind(int index, std::int64_t value) {
    const int code = sqlite3_bind_int64(stmt_, index, value);
    CHOREO_ASSERT(code == SQLITE_OK);
}

void Statement::bind(int index, std::string_view text) {
    CHOREO_ASSERT(text.size() <= 0x7fffffff);
    // A non-null pointer even for "": SQLite binds NULL for a null pointer.
    const char* data = text.empty() ? "" : text.data();
    const int code = sqlite3_bind_text(stmt_, index, data, static_cast<int>(text.size()), SQLITE_STATIC);
    CHOREO_ASSERT(code == SQLITE_OK);
}

void Statement::bind(int index, ByteView blob) {
    CHOREO_ASSERT(blob.size() <= 0x7fffffff);
    static constexpr std::uint8_t empty = 0;
    const void* data = blob.empty() ? &empty : blob.data();
    const int code = sqlite3_bind_blob(stmt_, index, data, static_cast<int>(blob.size()), SQLITE_STATIC);
    CHOREO_ASSERT(code == SQLITE_OK);
}

void Statement::bind_null(int index) {
    const int code = sqlite3_bind_null(stmt_, index);
    CHOREO_ASSERT(code == SQLITE_OK);
}

Result<bool> Statement::step(std::string_view what) {
    const int code = sqlite3_step(stmt_);
    if (code == SQLITE_ROW) return true;
    if (code == SQLITE_DONE) return false;
    return sqlite_status(code, what, sqlite3_db_handle(stmt_));
}

Status Statement::run(std::string_view what) {
    for (;;) {
        Result<bool> row = step(what);
        if (!row.ok()) return row.status();
        if (!row.value()) return Status{};
    }
}

void Statement::reset() {
    // Returns the last step's error again: already reported by step(). Bindings stay: every use
    // binds every parameter again (text and blobs are SQLITE_STATIC, so a stale binding is never
    // read: the next step comes only after new binds).
    sqlite3_reset(stmt_);
}

std::string Statement::text(int column) const {
    const unsigned char* data = sqlite3_column_text(stmt_, column);
    const int size = sqlite3_column_bytes(stmt_, column);
    if (data == nullptr) return {};
    return std::string(reinterpret_cast<const char*>(data), static_cast<std::size_t>(size));
}

Bytes Statement::blob(int column) const {
    const auto* data = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, column));
    const int size = sqlite3_column_bytes(stmt_, column);
    if (data == nullptr) return {};
    return Bytes(data, data + size);
}

}  // namespace choreo::sqlite
