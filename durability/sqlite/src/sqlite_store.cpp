// sqlite_store.cpp — the Store contract (choreo/store.h) on SQLite: reads, the batch commit,
// dead letters and the incremental purge.
#include "choreo/durability/sqlite_store.h"

#include <algorithm>
#include <array>
#include <limits>
#include <utility>

#include "sqlite_store_impl.h"

namespace choreo {

using sqlite::Statement;
using sqlite::Use;

namespace {

// Ids are stored as 16 big-endian bytes, so BLOB order is id order.
std::array<std::uint8_t, 16> id_bytes(const MessageId& id) { return id.to_bytes(); }
std::optional<MessageId> id_of(const Bytes& bytes) { return MessageId::from_bytes(bytes); }

Status corrupt(std::string what) { return precondition_error("store_corrupt", std::move(what)); }

std::int64_t limit_of(std::size_t limit) {
    return static_cast<std::int64_t>(std::min<std::size_t>(limit, std::size_t{1} << 40));
}

// Binds and runs one write; the statement is reset whatever happens.
template <typename Bind>
Status write(Statement& statement, std::string_view what, Bind bind) {
    Use use{statement};
    bind(*use);
    return use->run(what);
}

// Runs `body` in one transaction opened by `begin` (BEGIN IMMEDIATE to write, BEGIN DEFERRED to
// read a batch in one snapshot): commits if it succeeds, rolls back if it fails.
template <typename Body>
Status in_transaction(sqlite::StoreImpl& impl, Statement& begin, std::string_view what, Body body) {
    CHOREO_RETURN_IF_ERROR(write(begin, what, [](Statement&) {}));
    Status done = body();
    if (done.ok()) done = write(impl.commit, what, [](Statement&) {});
    if (!done.ok() && sqlite3_get_autocommit(impl.db.get()) == 0) {
        // Still inside the transaction (SQLite rolls back by itself after some errors, such as
        // SQLITE_FULL during COMMIT): undo every write of it. If even that fails, the caller's
        // close_if_stuck closes the connection.
        Status rolled_back = write(impl.rollback, "rollback", [](Statement&) {});
        if (!rolled_back.ok()) return rolled_back;
    }
    return done;
}

}  // namespace

std::string_view sqlite_sync_name(SqliteSync sync) {
    switch (sync) {
        case SqliteSync::off: return "off";
        case SqliteSync::normal: return "normal";
        case SqliteSync::full: return "full";
        case SqliteSync::extra: return "extra";
    }
    return "?";
}

Status sqlite::StoreImpl::prepare_all() {
    struct Entry {
        Statement* statement;
        const char* sql;
    };
    const std::array entries = {
        Entry{&find_dedup, "SELECT 1 FROM dedup WHERE id = ?1"},
        Entry{&horizon, "SELECT value FROM choreo_meta WHERE key = 'dedup_horizon_ms'"},
        Entry{&load_state, "SELECT value FROM state WHERE key = ?1"},
        Entry{&find_outbox, "SELECT id, to_address, route, partition_key, bytes, sent_at, settled, settled_at "
                            "FROM outbox WHERE id = ?1"},
        Entry{&unsettled_outbox, "SELECT id, to_address, route, partition_key, bytes, sent_at, settled, settled_at "
                                 "FROM outbox WHERE settled = 0 AND id > ?1 ORDER BY id LIMIT ?2"},
        Entry{&find_position, "SELECT next_offset FROM positions WHERE stream = ?1"},
        Entry{&find_dead_letter, "SELECT key, reason, detail, raw, raw_size, first_seen, last_seen, attempts "
                                 "FROM dead_letters WHERE key = ?1"},
        Entry{&list_dead_letters, "SELECT key, reason, detail, raw, raw_size, first_seen, last_seen, attempts "
                                  "FROM dead_letters WHERE key > ?1 ORDER BY key LIMIT ?2"},
        Entry{&delete_dead_letter, "DELETE FROM dead_letters WHERE key = ?1"},
        Entry{&find_promise, "SELECT id, state, value, created_at, deadline, settled_at, timer "
                             "FROM promises WHERE id = ?1"},
        Entry{&promise_timers, "SELECT id, state, value, created_at, deadline, settled_at, timer FROM promises "
                               "WHERE state = 0 AND deadline <> 0 AND id > ?1 ORDER BY id LIMIT ?2"},
        Entry{&find_execution, "SELECT id, function, args, reply_to, depth, state, created_at, finished_at "
                               "FROM executions WHERE id = ?1"},
        Entry{&running_executions, "SELECT id, function, args, reply_to, depth, state, created_at, finished_at "
                                   "FROM executions WHERE state = 0 AND id > ?1 ORDER BY id LIMIT ?2"},
        Entry{&load_history, "SELECT execution_id, position, kind, name, status, payload FROM history "
                             "WHERE execution_id = ?1 ORDER BY position LIMIT ?2"},
        Entry{&begin, "BEGIN IMMEDIATE"},
        Entry{&begin_read, "BEGIN DEFERRED"},
        Entry{&commit, "COMMIT"},
        Entry{&rollback, "ROLLBACK"},
        Entry{&insert_dedup, "INSERT INTO dedup (id, sent_at) VALUES (?1, ?2)"},
        Entry{&put_state, "INSERT INTO state (key, value) VALUES (?1, ?2) "
                          "ON CONFLICT (key) DO UPDATE SET value = excluded.value"},
        Entry{&erase_state, "DELETE FROM state WHERE key = ?1"},
        Entry{&insert_outbox, "INSERT INTO outbox (id, to_address, route, partition_key, bytes, sent_at, settled, "
                              "settled_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING"},
        Entry{&settle_outbox, "UPDATE outbox SET settled = 1, settled_at = ?2 WHERE id = ?1 AND settled = 0"},
        Entry{&put_position, "INSERT INTO positions (stream, next_offset) VALUES (?1, ?2) "
                             "ON CONFLICT (stream) DO UPDATE SET next_offset = excluded.next_offset"},
        Entry{&upsert_dead_letter,
              "INSERT INTO dead_letters (key, reason, detail, raw, raw_size, first_seen, last_seen, attempts) "
              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (key) DO UPDATE SET "
              "reason = excluded.reason, detail = excluded.detail, "
              "last_seen = max(last_seen, excluded.last_seen), attempts = attempts + excluded.attempts"},
        Entry{&create_promise, "INSERT INTO promises (id, state, value, created_at, deadline, settled_at, timer) "
                               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING"},
        Entry{&settle_promise, "UPDATE promises SET state = ?2, value = ?3, settled_at = ?4 "
                               "WHERE id = ?1 AND state = 0"},
        Entry{&put_execution,
              "INSERT INTO executions (id, function, args, reply_to, depth, state, created_at, finished_at) "
              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO UPDATE SET function = excluded.function, "
              "args = excluded.args, reply_to = excluded.reply_to, depth = excluded.depth, state = excluded.state, "
              "created_at = excluded.created_at, finished_at = excluded.finished_at"},
        Entry{&put_history, "INSERT INTO history (execution_id, position, kind, name, status, payload) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (execution_id, position) DO UPDATE SET "
                            "kind = excluded.kind, name = excluded.name, status = excluded.status, "
                            "payload = excluded.payload"},
        Entry{&raise_horizon, "UPDATE choreo_meta SET value = max(value, ?1) WHERE key = 'dedup_horizon_ms'"},
        Entry{&purge_dedup, "DELETE FROM dedup WHERE id IN "
                            "(SELECT id FROM dedup WHERE sent_at < ?1 ORDER BY sent_at LIMIT ?2)"},
        Entry{&any_dedup, "SELECT 1 FROM dedup WHERE sent_at < ?1 LIMIT 1"},
        Entry{&purge_outbox, "DELETE FROM outbox WHERE rowid IN (SELECT rowid FROM outbox "
                             "WHERE settled = 1 AND settled_at < ?1 ORDER BY settled_at LIMIT ?2)"},
        Entry{&any_outbox, "SELECT 1 FROM outbox WHERE settled = 1 AND settled_at < ?1 LIMIT 1"},
        // A running execution replays against its children's promises: they stay while it runs.
        Entry{&purge_promises,
              "DELETE FROM promises WHERE rowid IN (SELECT p.rowid FROM promises p "
              "WHERE p.state <> 0 AND p.settled_at < ?1 AND NOT EXISTS (SELECT 1 FROM executions e "
              "WHERE e.id = choreo_parent_execution(p.id) AND e.state = 0) ORDER BY p.settled_at LIMIT ?2)"},
        Entry{&any_promise, "SELECT 1 FROM promises p WHERE p.state <> 0 AND p.settled_at < ?1 AND NOT EXISTS "
                            "(SELECT 1 FROM executions e WHERE e.id = choreo_parent_execution(p.id) "
                            "AND e.state = 0) LIMIT 1"},
        Entry{&expired_executions, "SELECT id FROM executions WHERE state <> 0 AND finished_at < ?1 "
                                   "ORDER BY finished_at LIMIT ?2"},
        // From the last position down, so a history cut short by the budget is still a prefix.
        Entry{&purge_history, "DELETE FROM history WHERE execution_id = ?1 AND position IN (SELECT position "
                              "FROM history WHERE execution_id = ?1 ORDER BY position DESC LIMIT ?2)"},
        Entry{&delete_execution, "DELETE FROM executions WHERE id = ?1"},
    };
    for (const Entry& entry : entries) {
        Result<Statement> prepared = Statement::prepare(db.get(), entry.sql);
        if (!prepared.ok()) return prepared.status();
        *entry.statement = std::move(prepared).value();
    }
    return Status{};
}

SqliteStore::SqliteStore(SqliteStoreOptions options) : options_(std::move(options)) {}


SqliteStore::~SqliteStore() = default;

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(SqliteStoreOptions options) {
    if (options.path.empty()) return invalid_argument_error("invalid_store_options", "path is empty");
    constexpr std::int64_t int_max = std::numeric_limits<int>::max();
    if (options.busy_timeout_ms < 0 || options.busy_timeout_ms > int_max) {
        return invalid_argument_error("invalid_store_options", "busy_timeout_ms must be in [0, 2^31)");
    }
    if (options.size_bytes_max < 0 || options.cache_bytes < 0) {
        return invalid_argument_error("invalid_store_options", "negative size");
    }
    if (options.wal_autocheckpoint_pages < 1 || options.wal_autocheckpoint_pages > int_max) {
        return invalid_argument_error("invalid_store_options",
                                      "wal_autocheckpoint_pages must be at least 1 (0 would let the WAL grow forever)");
    }
    Result<sqlite::Connection> db = sqlite::open_database(options);
    if (!db.ok()) return db.status();
    std::unique_ptr<SqliteStore> store{new SqliteStore(std::move(options))};
    store->impl_ = std::make_unique<sqlite::StoreImpl>();
    store->impl_->db = std::move(db).value();
    CHOREO_RETURN_IF_ERROR(store->impl_->prepare_all());
    CHOREO_RETURN_IF_ERROR(store->impl_->load_horizon(store->options_.path));
    return store;
}

#define CHOREO_SQLITE_OPEN()                                                                  \
    std::lock_guard lock{mutex_};                                                             \
    if (!impl_) return closed_error("store_closed", options_.path + ": the store was closed"); \
    sqlite::StoreImpl& impl = *impl_

namespace {

Status find_dedup_rows(sqlite::StoreImpl& impl, std::span<const MessageId> ids, std::vector<bool>& found) {
    for (std::size_t index = 0; index < ids.size(); index++) {
        Use query{impl.find_dedup};
        const std::array<std::uint8_t, 16> key = id_bytes(ids[index]);
        query->bind(1, ByteView{key});
        Result<bool> row = query->step("find dedup");
        if (!row.ok()) return row.status();
        found[index] = row.value();
    }
    return Status{};
}

}  // namespace

Status SqliteStore::find_dedup(std::span<const MessageId> ids, std::vector<bool>& found) {
    CHOREO_SQLITE_OPEN();
    found.assign(ids.size(), false);
    if (ids.size() <= 1) return find_dedup_rows(impl, ids, found);
    // One read transaction for the whole batch. Outside one, every lookup opens and closes its own
    // WAL read transaction, taking and dropping shared-memory locks (fcntl system calls) each
    // time: that cost more than the lookups themselves (bench/sqlite_group_commit.cpp).
    Status read = in_transaction(impl, impl.begin_read, "dedup read",
                                 [&] { return find_dedup_rows(impl, ids, found); });
    return close_if_stuck(std::move(read));
}

Status SqliteStore::close_if_stuck(Status failure) {
    if (failure.ok() || !impl_ || sqlite3_get_autocommit(impl_->db.get()) != 0) return failure;
    impl_.reset();  // closing discards the uncommitted writes
    return closed_error("store_closed", options_.path + ": a failed transaction could not be rolled back (" +
                                            failure.to_string() + "); the store was closed");
}

Status sqlite::StoreImpl::load_horizon(const std::string& path) {
    Use query{horizon};
    Result<bool> row = query->step("read horizon");
    if (!row.ok()) return row.status();
    if (!row.value()) return corrupt(path + ": no dedup horizon row");
    horizon_ms = query->integer(0);
    return Status{};
}

// Read once per batch by the kernel: answered from memory. Only purge() moves the horizon, on
// this connection, and one process writes a store (sqlite_store.h), so the copy is exact.
Result<TimeMs> SqliteStore::dedup_horizon() {
    CHOREO_SQLITE_OPEN();
    return impl.horizon_ms;
}

Result<std::optional<Bytes>> SqliteStore::load_state(std::string_view key) {
    CHOREO_SQLITE_OPEN();
    Use query{impl.load_state};
    query->bind(1, key);
    Result<bool> row = query->step("load state");
    if (!row.ok()) return row.status();
    if (!row.value()) return std::optional<Bytes>{};
    return std::optional<Bytes>{query->blob(0)};
}

namespace {

Result<OutboxRow> outbox_row_of(const Statement& row) {
    OutboxRow outbox;
    std::optional<MessageId> id = id_of(row.blob(0));
    if (!id) return corrupt("outbox row with a malformed id");
    Result<Address> to = Address::parse(row.text(1));
    if (!to.ok()) return corrupt("outbox row " + id->to_string() + " with a malformed address");
    outbox.id = *id;
    outbox.to = std::move(to).value();
    outbox.route = row.text(2);
    outbox.key = row.text(3);
    outbox.bytes = row.blob(4);
    outbox.sent_at_ms = row.integer(5);
    outbox.settled = row.integer(6) != 0;
    outbox.settled_at_ms = row.integer(7);
    return outbox;
}

DeadLetter dead_letter_of(const Statement& row) {
    DeadLetter letter;
    letter.key = row.text(0);
    letter.reason = row.text(1);
    letter.detail = row.text(2);
    letter.raw = row.blob(3);
    letter.raw_size = static_cast<std::uint64_t>(row.integer(4));
    letter.first_seen_ms = row.integer(5);
    letter.last_seen_ms = row.integer(6);
    letter.attempts = static_cast<std::uint32_t>(row.integer(7));
    return letter;
}

Result<PromiseRow> promise_row_of(const Statement& row) {
    PromiseRow promise;
    promise.id = row.text(0);
    std::optional<PromiseState> state = sqlite::promise_state_of(row.integer(1));
    if (!state) return corrupt("promise " + promise.id + " with an unknown state");
    promise.state = *state;
    promise.value = row.blob(2);
    promise.created_at_ms = row.integer(3);
    promise.deadline_ms = row.integer(4);
    promise.settled_at_ms = row.integer(5);
    promise.timer = row.integer(6) != 0;
    return promise;
}

Result<ExecutionRow> execution_row_of(const Statement& row) {
    ExecutionRow execution;
    execution.id = row.text(0);
    execution.function = row.text(1);
    execution.args = row.blob(2);
    const std::string reply_to = row.text(3);
    if (!reply_to.empty()) {
        Result<Address> address = Address::parse(reply_to);
        if (!address.ok()) return corrupt("execution " + execution.id + " with a malformed reply_to");
        execution.reply_to = std::move(address).value();
    }
    execution.depth = static_cast<std::uint32_t>(row.integer(4));
    std::optional<ExecutionState> state = sqlite::execution_state_of(row.integer(5));
    if (!state) return corrupt("execution " + execution.id + " with an unknown state");
    execution.state = *state;
    execution.created_at_ms = row.integer(6);
    execution.finished_at_ms = row.integer(7);
    return execution;
}

Result<HistoryRecord> history_record_of(const Statement& row) {
    HistoryRecord record;
    record.execution_id = row.text(0);
    record.position = static_cast<std::uint32_t>(row.integer(1));
    std::optional<HistoryKind> kind = sqlite::history_kind_of(row.integer(2));
    std::optional<HistoryStatus> status = sqlite::history_status_of(row.integer(4));
    if (!kind || !status) return corrupt("history of " + record.execution_id + " with an unknown kind or status");
    record.kind = *kind;
    record.name = row.text(3);
    record.status = *status;
    record.payload = row.blob(5);
    return record;
}

// Runs a query that yields at most one row and converts it.
template <typename Row, typename Convert>
Result<std::optional<Row>> one_row(Statement& query, std::string_view what, Convert convert) {
    Result<bool> row = query.step(what);
    if (!row.ok()) return row.status();
    if (!row.value()) return std::optional<Row>{};
    Result<Row> converted = convert(query);
    if (!converted.ok()) return converted.status();
    return std::optional<Row>{std::move(converted).value()};
}

// Runs a query and converts every row, up to `limit`.
template <typename Row, typename Convert>
Result<std::vector<Row>> all_rows(Statement& query, std::string_view what, std::size_t limit, Convert convert) {
    std::vector<Row> rows;
    for (;;) {
        Result<bool> row = query.step(what);
        if (!row.ok()) return row.status();
        if (!row.value()) break;
        Result<Row> converted = convert(query);
        if (!converted.ok()) return converted.status();
        rows.push_back(std::move(converted).value());
        CHOREO_ASSERT(rows.size() <= limit);
    }
    return rows;
}

Result<DeadLetter> dead_letter_result(const Statement& row) { return dead_letter_of(row); }

}  // namespace

Result<std::optional<OutboxRow>> SqliteStore::find_outbox(const MessageId& id) {
    CHOREO_SQLITE_OPEN();
    Use query{impl.find_outbox};
    const std::array<std::uint8_t, 16> key = id_bytes(id);
    query->bind(1, ByteView{key});
    return one_row<OutboxRow>(*query, "find outbox row", outbox_row_of);
}

Result<std::vector<OutboxRow>> SqliteStore::unsettled_outbox(const MessageId& after, std::size_t limit) {
    CHOREO_SQLITE_OPEN();
    Use query{impl.unsettled_outbox};
    const std::array<std::uint8_t, 16> key = id_bytes(after);
    query->bind(1, ByteView{key});
    query->bind(2, limit_of(limit));
    return all_rows<OutboxRow>(*query, "list unsettled outbox", limit, outbox_row_of);
}

Result<std::optional<std::int64_t>> SqliteStore::consumed_position(std::string_view stream) {
    CHOREO_SQLITE_OPEN();
    Use query{impl.find_position};
    query->bind(1, stream);
    return one_row<std::int64_t>(*query, "read position",
                                 [](const Statement& row) -> Result<std::int64_t> { return row.integer(0); });
}

Result<std::optional<DeadLetter>> SqliteStore::find_dead_letter(std::string_view key) {
    CHOREO_SQLITE_OPEN();
    Use query{impl.find_dead_letter};
    query->bind(1, key);
    return one_row<DeadLetter>(*query, "find dead letter", dead_letter_result);
}

Result<std::vector<DeadLetter>> SqliteStore::dead_letters(std::string_view after_key, std::size_t limit) {
    CHOREO_SQLITE_OPEN();
    Use query{impl.list_dead_letters};
    query->bind(1, after_key);
    query->bind(2, limit_of(limit));
    return all_rows<DeadLetter>(*query, "list dead letters", limit, dead_letter_result);
}

Status SqliteStore::delete_dead_letter(std::string_view key) {
    CHOREO_SQLITE_OPEN();
    Use statement{impl.delete_dead_letter};
    statement->bind(1, key);
    CHOREO_RETURN_IF_ERROR(statement->run("delete dead letter"));
    if (statement->changes() == 0) return not_found_error("no_dead_letter", std::string(key));
    return Status{};
}

Result<std::optional<PromiseRow>> SqliteStore::find_promise(std::string_view id) {
    CHOREO_SQLITE_OPEN();
    Use query{impl.find_promise};
    query->bind(1, id);
    return one_row<PromiseRow>(*query, "find promise", promise_row_of);
}

Result<std::vector<PromiseRow>> SqliteStore::pending_promises_with_deadline(std::string_view after_id,
                                                                            std::size_t limit) {
    CHOREO_SQLITE_OPEN();
    Use query{impl.promise_timers};
    query->bind(1, after_id);
    query->bind(2, limit_of(limit));
    return all_rows<PromiseRow>(*query, "list timers", limit, promise_row_of);
}

Result<std::optional<ExecutionRow>> SqliteStore::find_execution(std::string_view id) {
    CHOREO_SQLITE_OPEN();
    Use query{impl.find_execution};
    query->bind(1, id);
    return one_row<ExecutionRow>(*query, "find execution", execution_row_of);
}

Result<std::vector<ExecutionRow>> SqliteStore::running_executions(std::string_view after_id, std::size_t limit) {
    CHOREO_SQLITE_OPEN();
    Use query{impl.running_executions};
    query->bind(1, after_id);
    query->bind(2, limit_of(limit));
    return all_rows<ExecutionRow>(*query, "list running executions", limit, execution_row_of);
}

Result<std::vector<HistoryRecord>> SqliteStore::load_history(std::string_view execution_id, std::size_t limit) {
    CHOREO_SQLITE_OPEN();
    Use query{impl.load_history};
    query->bind(1, execution_id);
    query->bind(2, limit_of(limit));
    return all_rows<HistoryRecord>(*query, "load history", limit, history_record_of);
}

// ---- commit ----

namespace {

Status write_dedup(sqlite::StoreImpl& impl, const CommitBatch& batch) {
    for (const DedupRow& row : batch.dedup) {
        const std::array<std::uint8_t, 16> key = id_bytes(row.id);
        Status inserted = write(impl.insert_dedup, "insert dedup row", [&](Statement& s) {
            s.bind(1, ByteView{key});
            s.bind(2, row.sent_at_ms);
        });
        if (inserted.reason() == "store_constraint") {  // the primary key: applied before
            return aborted_error("dedup_conflict", "id " + row.id.to_string() + " is already applied");
        }
        CHOREO_RETURN_IF_ERROR(inserted);
    }
    return Status{};
}

Status write_state_and_outbox(sqlite::StoreImpl& impl, const CommitBatch& batch) {
    for (const StateWrite& state : batch.state) {
        if (state.value) {
            CHOREO_RETURN_IF_ERROR(write(impl.put_state, "write state", [&](Statement& s) {
                s.bind(1, state.key);
                s.bind(2, ByteView{*state.value});
            }));
        } else {
            CHOREO_RETURN_IF_ERROR(write(impl.erase_state, "erase state", [&](Statement& s) { s.bind(1, state.key); }));
        }
    }
    for (const OutboxRow& row : batch.outbox) {
        const std::array<std::uint8_t, 16> key = id_bytes(row.id);
        const std::string to = row.to.to_string();
        CHOREO_RETURN_IF_ERROR(write(impl.insert_outbox, "insert outbox row", [&](Statement& s) {
            s.bind(1, ByteView{key});
            s.bind(2, to);
            s.bind(3, row.route);
            s.bind(4, row.key);
            s.bind(5, ByteView{row.bytes});
            s.bind(6, row.sent_at_ms);
            s.bind(7, std::int64_t{row.settled ? 1 : 0});
            s.bind(8, row.settled_at_ms);
        }));
    }
    for (const OutboxSettle& settle : batch.outbox_settled) {
        const std::array<std::uint8_t, 16> key = id_bytes(settle.id);
        CHOREO_RETURN_IF_ERROR(write(impl.settle_outbox, "settle outbox row", [&](Statement& s) {
            s.bind(1, ByteView{key});
            s.bind(2, settle.settled_at_ms);
        }));
    }
    for (const ConsumedPosition& position : batch.positions) {
        CHOREO_RETURN_IF_ERROR(write(impl.put_position, "write position", [&](Statement& s) {
            s.bind(1, position.stream);
            s.bind(2, position.next_offset);
        }));
    }
    return Status{};
}

Status write_dead_letters(sqlite::StoreImpl& impl, const CommitBatch& batch) {
    for (const DeadLetter& letter : batch.dead_letters) {
        CHOREO_RETURN_IF_ERROR(write(impl.upsert_dead_letter, "write dead letter", [&](Statement& s) {
            s.bind(1, letter.key);
            s.bind(2, letter.reason);
            s.bind(3, letter.detail);
            s.bind(4, ByteView{letter.raw});
            s.bind(5, static_cast<std::int64_t>(letter.raw_size));
            s.bind(6, letter.first_seen_ms);
            s.bind(7, letter.last_seen_ms);
            s.bind(8, std::int64_t{letter.attempts});
        }));
    }
    for (const std::string& key : batch.dead_letters_deleted) {
        CHOREO_RETURN_IF_ERROR(write(impl.delete_dead_letter, "delete dead letter",
                                     [&](Statement& s) { s.bind(1, key); }));
    }
    return Status{};
}

Status write_promises(sqlite::StoreImpl& impl, const CommitBatch& batch) {
    for (const PromiseRow& row : batch.promises_created) {
        CHOREO_ASSERT(row.state == PromiseState::pending);
        CHOREO_RETURN_IF_ERROR(write(impl.create_promise, "create promise", [&](Statement& s) {
            s.bind(1, row.id);
            s.bind(2, sqlite::promise_state_code(row.state));
            s.bind(3, ByteView{row.value});
            s.bind(4, row.created_at_ms);
            s.bind(5, row.deadline_ms);
            s.bind(6, row.settled_at_ms);
            s.bind(7, std::int64_t{row.timer ? 1 : 0});
        }));
    }
    for (const PromiseSettle& settle : batch.promises_settled) {
        CHOREO_ASSERT(settle.state != PromiseState::pending);
        CHOREO_RETURN_IF_ERROR(write(impl.settle_promise, "settle promise", [&](Statement& s) {
            s.bind(1, settle.id);
            s.bind(2, sqlite::promise_state_code(settle.state));
            s.bind(3, ByteView{settle.value});
            s.bind(4, settle.settled_at_ms);
        }));
    }
    return Status{};
}

Status write_executions(sqlite::StoreImpl& impl, const CommitBatch& batch) {
    for (const ExecutionRow& row : batch.executions) {
        CHOREO_ASSERT(!row.id.empty());
        if (row.state == ExecutionState::running) CHOREO_ASSERT(row.finished_at_ms == 0);
        const std::string reply_to = row.reply_to.empty() ? std::string{} : row.reply_to.to_string();
        CHOREO_RETURN_IF_ERROR(write(impl.put_execution, "write execution", [&](Statement& s) {
            s.bind(1, row.id);
            s.bind(2, row.function);
            s.bind(3, ByteView{row.args});
            s.bind(4, reply_to);
            s.bind(5, std::int64_t{row.depth});
            s.bind(6, sqlite::execution_state_code(row.state));
            s.bind(7, row.created_at_ms);
            s.bind(8, row.finished_at_ms);
        }));
    }
    for (const HistoryRecord& record : batch.history) {
        CHOREO_ASSERT(!record.execution_id.empty());
        CHOREO_RETURN_IF_ERROR(write(impl.put_history, "write history", [&](Statement& s) {
            s.bind(1, record.execution_id);
            s.bind(2, std::int64_t{record.position});
            s.bind(3, sqlite::history_kind_code(record.kind));
            s.bind(4, record.name);
            s.bind(5, sqlite::history_status_code(record.status));
            s.bind(6, ByteView{record.payload});
        }));
    }
    return Status{};
}

Status write_batch(sqlite::StoreImpl& impl, const CommitBatch& batch) {
    CHOREO_RETURN_IF_ERROR(write_dedup(impl, batch));
    CHOREO_RETURN_IF_ERROR(write_state_and_outbox(impl, batch));
    CHOREO_RETURN_IF_ERROR(write_dead_letters(impl, batch));
    CHOREO_RETURN_IF_ERROR(write_promises(impl, batch));
    return write_executions(impl, batch);
}

}  // namespace

Status SqliteStore::commit(const CommitBatch& batch) {
    CHOREO_SQLITE_OPEN();
    if (batch.empty()) return Status{};
    return close_if_stuck(in_transaction(impl, impl.begin, "commit batch", [&] { return write_batch(impl, batch); }));
}

// ---- purge ----

namespace {

struct PurgeBudget {
    std::size_t left;
    PurgeResult result{};
    void spend(int rows) {
        CHOREO_ASSERT(rows >= 0 && static_cast<std::size_t>(rows) <= left);
        left -= static_cast<std::size_t>(rows);
        result.rows_deleted += static_cast<std::size_t>(rows);
    }
};

Result<bool> exists(Statement& query, TimeMs cutoff_ms, std::string_view what) {
    Use use{query};
    use->bind(1, cutoff_ms);
    return use->step(what);
}

// Deletes up to the budget with `purge` (?1 cutoff, ?2 limit).
Status purge_rows(Statement& purge, TimeMs cutoff_ms, PurgeBudget& budget, std::string_view what) {
    if (budget.left == 0) return Status{};
    Use use{purge};
    use->bind(1, cutoff_ms);
    use->bind(2, static_cast<std::int64_t>(budget.left));
    CHOREO_RETURN_IF_ERROR(use->run(what));
    budget.spend(use->changes());
    return Status{};
}

// History first, from the last position down, and the row last: a purge stopped halfway leaves a
// finished row with a prefix of its history, never history without its row.
Status purge_executions(sqlite::StoreImpl& impl, TimeMs cutoff_ms, PurgeBudget& budget) {
    if (budget.left == 0) return Status{};
    std::vector<std::string> expired;
    {
        Use query{impl.expired_executions};
        query->bind(1, cutoff_ms);
        query->bind(2, static_cast<std::int64_t>(budget.left));
        for (;;) {
            Result<bool> row = query->step("list expired executions");
            if (!row.ok()) return row.status();
            if (!row.value()) break;
            expired.push_back(query->text(0));
        }
    }
    for (const std::string& id : expired) {
        if (budget.left == 0) return Status{};
        {
            Use history{impl.purge_history};
            history->bind(1, id);
            history->bind(2, static_cast<std::int64_t>(budget.left));
            CHOREO_RETURN_IF_ERROR(history->run("purge history"));
            budget.spend(history->changes());
        }
        if (budget.left == 0) return Status{};
        Use row{impl.delete_execution};
        row->bind(1, id);
        CHOREO_RETURN_IF_ERROR(row->run("purge execution"));
        budget.spend(row->changes());
    }
    return Status{};
}

// After the budget ran out: is anything left to purge?
Result<bool> anything_left(sqlite::StoreImpl& impl, const PurgeRequest& request) {
    Result<bool> dedup = exists(impl.any_dedup, request.dedup_sent_before_ms, "check dedup");
    if (!dedup.ok() || dedup.value()) return dedup;
    Result<bool> outbox = exists(impl.any_outbox, request.outbox_settled_before_ms, "check outbox");
    if (!outbox.ok() || outbox.value()) return outbox;
    Result<bool> promise = exists(impl.any_promise, request.promise_settled_before_ms, "check promises");
    if (!promise.ok() || promise.value()) return promise;
    Use query{impl.expired_executions};
    query->bind(1, request.execution_finished_before_ms);
    query->bind(2, std::int64_t{1});
    return query->step("check executions");
}

// The horizon is already at the cutoff and no row is due.
Result<bool> nothing_to_purge(sqlite::StoreImpl& impl, const PurgeRequest& request) {
    if (impl.horizon_ms < request.dedup_sent_before_ms) return false;
    Result<bool> left = anything_left(impl, request);
    if (!left.ok()) return left.status();
    return !left.value();
}

}  // namespace

Result<PurgeResult> SqliteStore::purge(const PurgeRequest& request) {
    CHOREO_SQLITE_OPEN();
    CHOREO_ASSERT(request.rows_max > 0);
    PurgeBudget budget{request.rows_max};
    // Nothing to do: no write transaction (and no fsync) for an idle pass.
    Result<bool> idle = nothing_to_purge(impl, request);
    if (!idle.ok()) return idle.status();
    if (idle.value()) return budget.result;
    Status purged = in_transaction(impl, impl.begin, "purge", [&]() -> Status {
        // The horizon moves in the same transaction as the deletions, never backwards.
        CHOREO_RETURN_IF_ERROR(write(impl.raise_horizon, "raise horizon",
                                     [&](Statement& s) { s.bind(1, request.dedup_sent_before_ms); }));
        CHOREO_RETURN_IF_ERROR(purge_rows(impl.purge_dedup, request.dedup_sent_before_ms, budget, "purge dedup"));
        CHOREO_RETURN_IF_ERROR(
            purge_rows(impl.purge_outbox, request.outbox_settled_before_ms, budget, "purge outbox"));
        CHOREO_RETURN_IF_ERROR(
            purge_rows(impl.purge_promises, request.promise_settled_before_ms, budget, "purge promises"));
        CHOREO_RETURN_IF_ERROR(purge_executions(impl, request.execution_finished_before_ms, budget));
        if (budget.left == 0) {
            Result<bool> more = anything_left(impl, request);
            if (!more.ok()) return more.status();
            budget.result.more = more.value();
        }
        return Status{};
    });
    if (!purged.ok()) return close_if_stuck(std::move(purged));
    impl.horizon_ms = std::max(impl.horizon_ms, request.dedup_sent_before_ms);  // as committed
    CHOREO_ASSERT(budget.result.rows_deleted <= request.rows_max);
    return budget.result;
}

// ---- maintenance ----

Result<std::string> SqliteStore::integrity_check() {
    CHOREO_SQLITE_OPEN();
    Result<Statement> query = Statement::prepare(impl.db.get(), "PRAGMA integrity_check");
    if (!query.ok()) return query.status();
    std::string report;
    for (;;) {
        Result<bool> row = query->step("integrity check");
        if (!row.ok()) return row.status();
        if (!row.value()) break;
        if (!report.empty()) report += "\n";
        report += query->text(0);
    }
    return report;
}

Status SqliteStore::checkpoint() {
    CHOREO_SQLITE_OPEN();
    const int code = sqlite3_wal_checkpoint_v2(impl.db.get(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
    if (code != SQLITE_OK) return sqlite::sqlite_status(code, "checkpoint", impl.db.get());
    return Status{};
}

void SqliteStore::abandon() {
    std::lock_guard lock{mutex_};
    if (!impl_) return;
    sqlite3_db_config(impl_->db.get(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    impl_.reset();
}

#undef CHOREO_SQLITE_OPEN

}  // namespace choreo
