// sqlite_store_impl.h — the SQLite store's connection and prepared statements (private).
#pragma once

#include "sqlite_db.h"

#include "choreo/durability/sqlite_store.h"

namespace choreo::sqlite {

// Every statement the store runs, prepared once when it opens. Declared after the connection,
// so they are finalized before it closes.
struct StoreImpl {
    Connection db;

    // Reads.
    Statement find_dedup, horizon, load_state, find_outbox, unsettled_outbox, find_position;
    Statement find_dead_letter, list_dead_letters, delete_dead_letter;
    Statement find_promise, promise_timers, find_execution, running_executions, load_history;
    // Commit (begin_read and commit/rollback also bracket the batch's dedup lookups).
    Statement begin, begin_read, commit, rollback;
    Statement insert_dedup, put_state, erase_state, insert_outbox, settle_outbox, put_position;
    Statement upsert_dead_letter, create_promise, settle_promise, put_execution, put_history;
    // Purge.
    Statement raise_horizon, purge_dedup, any_dedup, purge_outbox, any_outbox;
    Statement purge_promises, any_promise, expired_executions, purge_history, delete_execution;

    // The dedup horizon as committed: loaded at open, moved by purge() after its commit.
    TimeMs horizon_ms = 0;

    Status prepare_all();
    Status load_horizon(const std::string& path);
};


// Opens the file and brings it to this build's schema (sqlite_schema.cpp).
Result<Connection> open_database(const SqliteStoreOptions& options);

// Stable codes stored for enums: never reorder; add new values at the end.
std::int64_t promise_state_code(PromiseState state);
std::optional<PromiseState> promise_state_of(std::int64_t code);
std::int64_t execution_state_code(ExecutionState state);
std::optional<ExecutionState> execution_state_of(std::int64_t code);
std::int64_t history_kind_code(HistoryKind kind);
std::optional<HistoryKind> history_kind_of(std::int64_t code);
std::int64_t history_status_code(HistoryStatus status);
std::optional<HistoryStatus> history_status_of(std::int64_t code);

}  // namespace choreo::sqlite
