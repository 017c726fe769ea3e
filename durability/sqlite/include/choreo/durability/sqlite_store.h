// choreo/durability/sqlite_store.h — the Store interface on an SQLite file: the embedded default.
//
// One file per service instance. The store keeps one writer connection, in WAL mode, with every
// statement prepared once when the store opens. A runtime batch is one transaction
// (group commit): its dedup rows, state writes, outbox rows, settles, dead letters, promises and
// history commit together or not at all. With `synchronous = full` (the default) a commit that
// returned ok survives a power cut; `normal` survives a process crash but may lose the last
// commits on a power cut.
//
//   auto opened = choreo::SqliteStore::open({.path = "orders-1.db"});
//   if (!opened.ok()) { std::cerr << opened.status().to_string() << "\n"; return 1; }
//   choreo::Service svc{options, transport, **opened};
//
// Opening checks what the file is: a new or empty file gets the schema; a choreo database of an
// older schema is migrated forward in one transaction; anything else is refused with a named
// error and left untouched:
//   not_a_choreo_database  the file is not SQLite, or holds another application's tables
//   schema_too_new         written by a newer choreo (its schema version is above ours)
//   store_cannot_open      the file or its directory cannot be opened or created
//   store_not_writable     read-only file or directory (WAL needs to write beside the file)
// Commits that cannot go on fail with failed_precondition (the runtime stops with the error) and
// leave every earlier commit intact: store_full (disk full, or size_bytes_max reached),
// store_io_error, store_corrupt. A busy file (another process holds the write lock longer than
// busy_timeout_ms) is transient: the runtime tries the batch again.
//
// Threading: every method takes one internal mutex, so other threads may read (tests, result())
// while the runtime commits; they wait for a commit in flight. One process at a time should
// write a store: SQLite's locks keep a second writer safe but make it wait.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "choreo/store.h"

namespace choreo {

namespace sqlite {
struct StoreImpl;  // the connection and its prepared statements (private)
}  // namespace sqlite

enum class SqliteSync { off, normal, full, extra };
std::string_view sqlite_sync_name(SqliteSync sync);

struct SqliteStoreOptions {
    std::string path{};                     // the database file; created if missing (and `create`)
    bool create = true;                     // false: a missing file is store_cannot_open
    SqliteSync synchronous = SqliteSync::full;
    std::int64_t busy_timeout_ms = 5000;    // wait this long for another process's lock
    // Caps the database file: a commit that would grow it past this fails with store_full, as on
    // a full disk. 0: no cap. Rounded down to whole pages.
    std::int64_t size_bytes_max = 0;
    // Copy the WAL back into the database once it holds this many pages (SQLite's default), in
    // the commit that crosses it. (A background checkpoint thread was measured slower on these
    // 2-core machines: bench/sqlite_group_commit, 57-62% of raw against 66-67%.)
    std::int64_t wal_autocheckpoint_pages = 1000;
    std::int64_t cache_bytes = 8 << 20;      // page cache of the connection
};

class SqliteStore final : public Store {
public:
    // The schema version this build writes; databases at this version or older open.
    static constexpr std::int64_t schema_version = 1;
    // PRAGMA application_id of every choreo database ("chor").
    static constexpr std::int64_t application_id = 0x63686f72;

    static Result<std::unique_ptr<SqliteStore>> open(SqliteStoreOptions options);
    ~SqliteStore() override;
    SqliteStore(const SqliteStore&) = delete;
    SqliteStore& operator=(const SqliteStore&) = delete;

    Features features() const override { return {.persistent = true, .shared = false}; }
    Status find_dedup(std::span<const MessageId> ids, std::vector<bool>& found) override;
    Result<TimeMs> dedup_horizon() override;
    Result<std::optional<Bytes>> load_state(std::string_view key) override;
    Status commit(const CommitBatch& batch) override;
    Result<std::optional<OutboxRow>> find_outbox(const MessageId& id) override;
    Result<std::vector<OutboxRow>> unsettled_outbox(const MessageId& after, std::size_t limit) override;
    Result<std::optional<std::int64_t>> consumed_position(std::string_view stream) override;
    Result<std::optional<DeadLetter>> find_dead_letter(std::string_view key) override;
    Result<std::vector<DeadLetter>> dead_letters(std::string_view after_key, std::size_t limit) override;
    Status delete_dead_letter(std::string_view key) override;
    Result<PurgeResult> purge(const PurgeRequest& request) override;
    Result<std::optional<PromiseRow>> find_promise(std::string_view id) override;
    Result<std::vector<PromiseRow>> pending_promises_with_deadline(std::string_view after_id,
                                                                   std::size_t limit) override;
    Result<std::optional<ExecutionRow>> find_execution(std::string_view id) override;
    Result<std::vector<ExecutionRow>> running_executions(std::string_view after_id,
                                                         std::size_t limit) override;
    Result<std::vector<HistoryRecord>> load_history(std::string_view execution_id,
                                                    std::size_t limit) override;

    // Runs PRAGMA integrity_check: "ok", or SQLite's list of problems.
    Result<std::string> integrity_check();
    // Copies every committed page back into the database file and truncates the WAL.
    Status checkpoint();
    const SqliteStoreOptions& options() const { return options_; }

    // Test hook: closes the connection without the checkpoint a clean close does, leaving the
    // WAL as a killed process would. Every later call fails with `closed`.
    void abandon();

private:
    explicit SqliteStore(SqliteStoreOptions options);
    // After a failure: if the connection is still inside a transaction (its ROLLBACK failed),
    // closes it, so no later read sees the failed batch's rows; returns the status to report.
    Status close_if_stuck(Status failure);

    SqliteStoreOptions options_;
    mutable std::mutex mutex_;
    std::unique_ptr<sqlite::StoreImpl> impl_;  // null once closed
};

}  // namespace choreo
