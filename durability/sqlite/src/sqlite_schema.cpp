// sqlite_schema.cpp — opening a file: what it is, the schema and its forward migrations.
#include <algorithm>
#include <array>
#include <chrono>
#include <string>
#include <thread>

#include "sqlite_store_impl.h"

namespace choreo::sqlite {

namespace {

// migrations[i] takes a database from schema version i to i + 1, inside one transaction.
// Version 0 is an empty file. Released migrations are never edited: a change is a new entry.
constexpr std::array<const char*, SqliteStore::schema_version> migrations = {
    // 0 -> 1: the first schema.
    R"sql(
CREATE TABLE choreo_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
INSERT INTO choreo_meta (key, value) VALUES ('dedup_horizon_ms', 0);

CREATE TABLE dedup (id BLOB PRIMARY KEY, sent_at INTEGER NOT NULL) STRICT, WITHOUT ROWID;
CREATE INDEX dedup_by_sent_at ON dedup (sent_at);

CREATE TABLE state (key TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT;

CREATE TABLE outbox (
  id BLOB PRIMARY KEY, to_address TEXT NOT NULL, route TEXT NOT NULL, partition_key TEXT NOT NULL,
  bytes BLOB NOT NULL, sent_at INTEGER NOT NULL, settled INTEGER NOT NULL CHECK (settled IN (0, 1)),
  settled_at INTEGER NOT NULL) STRICT;
CREATE INDEX outbox_unsettled ON outbox (id) WHERE settled = 0;
CREATE INDEX outbox_by_settled_at ON outbox (settled_at) WHERE settled = 1;

CREATE TABLE positions (stream TEXT PRIMARY KEY, next_offset INTEGER NOT NULL) STRICT;

CREATE TABLE dead_letters (
  key TEXT PRIMARY KEY, reason TEXT NOT NULL, detail TEXT NOT NULL, raw BLOB NOT NULL,
  raw_size INTEGER NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
  attempts INTEGER NOT NULL) STRICT;

CREATE TABLE promises (
  id TEXT PRIMARY KEY, state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 4), value BLOB NOT NULL,
  created_at INTEGER NOT NULL, deadline INTEGER NOT NULL, settled_at INTEGER NOT NULL,
  timer INTEGER NOT NULL CHECK (timer IN (0, 1))) STRICT;
CREATE INDEX promises_timers ON promises (id) WHERE state = 0 AND deadline <> 0;
CREATE INDEX promises_by_settled_at ON promises (settled_at) WHERE state <> 0;

CREATE TABLE executions (
  id TEXT PRIMARY KEY, function TEXT NOT NULL, args BLOB NOT NULL, reply_to TEXT NOT NULL,
  depth INTEGER NOT NULL, state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 2),
  created_at INTEGER NOT NULL, finished_at INTEGER NOT NULL) STRICT;
CREATE INDEX executions_running ON executions (id) WHERE state = 0;
CREATE INDEX executions_by_finished_at ON executions (finished_at) WHERE state <> 0;

CREATE TABLE history (
  execution_id TEXT NOT NULL, position INTEGER NOT NULL, kind INTEGER NOT NULL CHECK (kind BETWEEN 0 AND 3),
  name TEXT NOT NULL, status INTEGER NOT NULL CHECK (status BETWEEN 0 AND 2), payload BLOB NOT NULL,
  PRIMARY KEY (execution_id, position)) STRICT;
)sql",
};

// Runs a one-row query (a pragma, a count) and returns its statement on that row.
Result<Statement> first_row(Connection& db, std::string_view sql) {
    Result<Statement> statement = Statement::prepare(db.get(), sql);
    if (!statement.ok()) return statement.status();
    Result<bool> row = statement->step(sql);
    if (!row.ok()) return row.status();
    if (!row.value()) return precondition_error("store_error", std::string(sql) + " returned no row");
    return statement;
}

Result<std::int64_t> pragma_integer(Connection& db, std::string_view sql) {
    Result<Statement> row = first_row(db, sql);
    if (!row.ok()) return row.status();
    return row->integer(0);
}

Result<std::string> pragma_text(Connection& db, std::string_view sql) {
    Result<Statement> row = first_row(db, sql);
    if (!row.ok()) return row.status();
    return row->text(0);
}

// What the file holds, read before anything is written to it.
struct Identity {
    std::int64_t application_id = 0;
    std::int64_t version = 0;
    std::int64_t objects = 0;  // tables, indexes, views, triggers
};

Result<Identity> read_identity(Connection& db);

// Read in one read transaction: one snapshot, even while another process stamps the file.
Result<Identity> identify(Connection& db) {
    CHOREO_RETURN_IF_ERROR(db.exec("BEGIN", "begin identify"));
    Result<Identity> identity = read_identity(db);
    (void)db.exec("COMMIT", "end identify");  // a read transaction: nothing to lose
    return identity;
}

Result<Identity> read_identity(Connection& db) {
    Identity identity;
    // A file that is not SQLite fails here, with SQLITE_NOTADB.
    Result<std::int64_t> objects = pragma_integer(db, "SELECT count(*) FROM sqlite_schema");
    if (!objects.ok()) return objects.status();
    identity.objects = objects.value();
    Result<std::int64_t> application = pragma_integer(db, "PRAGMA application_id");
    if (!application.ok()) return application.status();
    identity.application_id = application.value();
    Result<std::int64_t> version = pragma_integer(db, "PRAGMA user_version");
    if (!version.ok()) return version.status();
    identity.version = version.value();
    return identity;
}

Status check_identity(const Identity& identity, const std::string& path) {
    const bool empty_file = identity.application_id == 0 && identity.version == 0 && identity.objects == 0;
    if (empty_file) return Status{};
    if (identity.application_id != SqliteStore::application_id) {
        return precondition_error("not_a_choreo_database",
                                  path + " is an SQLite database of another application (application_id " +
                                      std::to_string(identity.application_id) + ", " +
                                      std::to_string(identity.objects) + " schema objects); left untouched");
    }
    if (identity.version > SqliteStore::schema_version) {
        return precondition_error("schema_too_new", path + " has schema version " + std::to_string(identity.version) +
                                                        "; this build knows versions up to " +
                                                        std::to_string(SqliteStore::schema_version) +
                                                        ": upgrade choreo, or open a copy with a newer build");
    }
    if (identity.version < 1) {
        return precondition_error("store_corrupt", path + " is marked as choreo but has no schema version");
    }
    return Status{};
}

// Runs the migrations from `from` up to this build's version in one transaction, so a crash
// mid-migration leaves the old version whole.
// Another process may be opening the same new file at the same moment: the version is read
// again under the write lock, and whoever comes second finds the work done.
Status migrate(Connection& db, std::int64_t from) {
    CHOREO_ASSERT(from >= 0 && from <= SqliteStore::schema_version);
    if (from == SqliteStore::schema_version) return Status{};
    CHOREO_RETURN_IF_ERROR(db.exec("BEGIN IMMEDIATE", "begin migration"));
    Result<std::int64_t> current = pragma_integer(db, "PRAGMA user_version");
    if (!current.ok() || current.value() != from) {
        (void)db.exec("ROLLBACK", "rollback migration");
        if (!current.ok()) return current.status();
        if (current.value() == SqliteStore::schema_version) return Status{};
        return precondition_error("store_error", "the schema version changed from " + std::to_string(from) +
                                                     " to " + std::to_string(current.value()) + " while opening");
    }
    for (std::int64_t version = from; version < SqliteStore::schema_version; version++) {
        Status applied = db.exec(migrations[static_cast<std::size_t>(version)],
                                 "migrate schema " + std::to_string(version) + " -> " + std::to_string(version + 1));
        if (!applied.ok()) {
            (void)db.exec("ROLLBACK", "rollback migration");
            return applied;
        }
    }
    const std::string stamp = "PRAGMA application_id = " + std::to_string(SqliteStore::application_id) +
                              "; PRAGMA user_version = " + std::to_string(SqliteStore::schema_version);
    Status stamped = db.exec(stamp.c_str(), "stamp schema version");
    if (!stamped.ok()) {
        (void)db.exec("ROLLBACK", "rollback migration");
        return stamped;
    }
    return db.exec("COMMIT", "commit migration");
}

const char* synchronous_pragma(SqliteSync sync) {
    switch (sync) {
        case SqliteSync::off: return "PRAGMA synchronous = OFF";
        case SqliteSync::normal: return "PRAGMA synchronous = NORMAL";
        case SqliteSync::full: return "PRAGMA synchronous = FULL";
        case SqliteSync::extra: return "PRAGMA synchronous = EXTRA";
    }
    CHOREO_UNREACHABLE();
}

// Switching to WAL needs a moment alone with the file; SQLite answers busy at once, without its
// busy handler, while another connection reads it (another process opening the same file).
// So this waits here, in small steps, up to busy_timeout_ms.
Result<std::string> enter_wal_mode(Connection& db, const SqliteStoreOptions& options) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(options.busy_timeout_ms);
    for (int attempt = 1;; attempt++) {
        Result<std::string> mode = pragma_text(db, "PRAGMA journal_mode = WAL");
        if (mode.ok() || mode.status().code() != StatusCode::transient) return mode;
        if (std::chrono::steady_clock::now() >= give_up) return mode;
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(attempt, 20)));
    }
}

Status configure(Connection& db, const SqliteStoreOptions& options) {
    Result<std::string> mode = enter_wal_mode(db, options);
    if (!mode.ok()) return mode.status();
    if (mode.value() != "wal") {
        return precondition_error("store_error", options.path + ": WAL mode is not available (journal mode stays " +
                                                     mode.value() + ")");
    }
    CHOREO_RETURN_IF_ERROR(db.exec(synchronous_pragma(options.synchronous), "set synchronous"));
    const std::string settings = "PRAGMA wal_autocheckpoint = " + std::to_string(options.wal_autocheckpoint_pages) +
                                 "; PRAGMA cache_size = -" + std::to_string(options.cache_bytes / 1024) +
                                 "; PRAGMA journal_size_limit = " + std::to_string(64 << 20) +
                                 "; PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY";
    CHOREO_RETURN_IF_ERROR(db.exec(settings.c_str(), "configure"));
    if (options.size_bytes_max > 0) {
        Result<std::int64_t> page_size = pragma_integer(db, "PRAGMA page_size");
        if (!page_size.ok()) return page_size.status();
        const std::int64_t pages = std::max<std::int64_t>(1, options.size_bytes_max / page_size.value());
        Result<std::int64_t> used = pragma_integer(db, "PRAGMA page_count");
        if (!used.ok()) return used.status();
        if (used.value() > pages) {
            return precondition_error("store_full", options.path + " holds " +
                                                        std::to_string(used.value() * page_size.value()) +
                                                        " bytes, over size_bytes_max " +
                                                        std::to_string(options.size_bytes_max));
        }
        const std::string cap = "PRAGMA max_page_count = " + std::to_string(pages);
        Result<std::int64_t> capped = pragma_integer(db, cap.c_str());
        if (!capped.ok()) return capped.status();
    }
    return Status{};
}

// choreo_parent_execution(promise_id): the execution a child promise belongs to, or NULL.
void parent_execution_function(sqlite3_context* context, int, sqlite3_value** arguments) {
    const unsigned char* text = sqlite3_value_text(arguments[0]);
    if (text == nullptr) {
        sqlite3_result_null(context);
        return;
    }
    const std::string_view id{reinterpret_cast<const char*>(text),
                              static_cast<std::size_t>(sqlite3_value_bytes(arguments[0]))};
    const std::optional<std::string_view> parent = parent_execution_id(id);
    if (!parent) {
        sqlite3_result_null(context);
        return;
    }
    sqlite3_result_text(context, parent->data(), static_cast<int>(parent->size()), SQLITE_TRANSIENT);
}

}  // namespace

Result<Connection> open_database(const SqliteStoreOptions& options) {
    // STRICT tables and SQLITE_OPEN_EXRESCODE need 3.37.
    if (sqlite3_libversion_number() < 3037000) {
        return precondition_error("sqlite_too_old", std::string("SQLite ") + sqlite3_libversion() +
                                                        " is linked; the store needs 3.37 or newer");
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    if (options.create) flags |= SQLITE_OPEN_CREATE;
    sqlite3* handle = nullptr;
    const int code = sqlite3_open_v2(options.path.c_str(), &handle, flags, nullptr);
    Connection db{handle};  // closed on every early return, even when the open failed
    if (code != SQLITE_OK) return sqlite_status(code, "open " + options.path, handle);
    sqlite3_extended_result_codes(db.get(), 1);
    sqlite3_busy_timeout(db.get(), static_cast<int>(options.busy_timeout_ms));  // before any read
    if (sqlite3_db_readonly(db.get(), "main") == 1) {
        return precondition_error("store_not_writable", options.path + " can only be opened read-only");
    }
    Result<Identity> identity = identify(db);
    if (!identity.ok()) {
        if (identity.status().reason() == "not_a_choreo_database") {
            return precondition_error("not_a_choreo_database",
                                      options.path + " is not an SQLite database; left untouched");
        }
        return identity.status();
    }
    CHOREO_RETURN_IF_ERROR(check_identity(identity.value(), options.path));
    CHOREO_RETURN_IF_ERROR(configure(db, options));
    const int registered = sqlite3_create_function_v2(db.get(), "choreo_parent_execution", 1,
                                                      SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS,
                                                      nullptr, parent_execution_function, nullptr, nullptr, nullptr);
    if (registered != SQLITE_OK) return sqlite_status(registered, "register choreo_parent_execution", db.get());
    CHOREO_RETURN_IF_ERROR(migrate(db, identity->version));
    return db;
}

std::int64_t promise_state_code(PromiseState state) {
    switch (state) {
        case PromiseState::pending: return 0;
        case PromiseState::resolved: return 1;
        case PromiseState::rejected: return 2;
        case PromiseState::canceled: return 3;
        case PromiseState::timed_out: return 4;
    }
    CHOREO_UNREACHABLE();
}

std::optional<PromiseState> promise_state_of(std::int64_t code) {
    static constexpr std::array states = {PromiseState::pending, PromiseState::resolved, PromiseState::rejected,
                                          PromiseState::canceled, PromiseState::timed_out};
    if (code < 0 || code >= static_cast<std::int64_t>(states.size())) return std::nullopt;
    return states[static_cast<std::size_t>(code)];
}

std::int64_t execution_state_code(ExecutionState state) {
    switch (state) {
        case ExecutionState::running: return 0;
        case ExecutionState::completed: return 1;
        case ExecutionState::failed: return 2;
    }
    CHOREO_UNREACHABLE();
}

std::optional<ExecutionState> execution_state_of(std::int64_t code) {
    static constexpr std::array states = {ExecutionState::running, ExecutionState::completed, ExecutionState::failed};
    if (code < 0 || code >= static_cast<std::int64_t>(states.size())) return std::nullopt;
    return states[static_cast<std::size_t>(code)];
}

std::int64_t history_kind_code(HistoryKind kind) {
    switch (kind) {
        case HistoryKind::step: return 0;
        case HistoryKind::call: return 1;
        case HistoryKind::sleep: return 2;
        case HistoryKind::send: return 3;
    }
    CHOREO_UNREACHABLE();
}

std::optional<HistoryKind> history_kind_of(std::int64_t code) {
    static constexpr std::array kinds = {HistoryKind::step, HistoryKind::call, HistoryKind::sleep, HistoryKind::send};
    if (code < 0 || code >= static_cast<std::int64_t>(kinds.size())) return std::nullopt;
    return kinds[static_cast<std::size_t>(code)];
}

std::int64_t history_status_code(HistoryStatus status) {
    switch (status) {
        case HistoryStatus::started: return 0;
        case HistoryStatus::completed: return 1;
        case HistoryStatus::failed: return 2;
    }
    CHOREO_UNREACHABLE();
}

std::optional<HistoryStatus> history_status_of(std::int64_t code) {
    static constexpr std::array statuses = {HistoryStatus::started, HistoryStatus::completed, HistoryStatus::failed};
    if (code < 0 || code >= static_cast<std::int64_t>(statuses.size())) return std::nullopt;
    return statuses[static_cast<std::size_t>(code)];
}

}  // namespace choreo::sqlite
