// bench_common.h — what the SQLite benchmarks share: the deposit workload, the raw SQLite
// group-commit loop they compare against (the same rows the store writes, with the same SQL),
// and the helpers that time a Service until its last input committed.
#pragma once

#include <sqlite3.h>
#include <stdlib.h>  // mkdtemp
#include <time.h>    // clock_gettime

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>

#include "choreo/codec.h"
#include "choreo/durability/sqlite_store.h"
#include "choreo/service.h"
#include "choreo/system.h"

namespace choreo_bench {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Deposit {
    std::string account;
    std::int64_t amount = 0;
    MSGPACK_DEFINE_MAP(account, amount);
};

// One row of the table: a batch size, with or without one send per step.
struct Case {
    std::size_t batch = 0;
    bool send = false;
};

// The same N steps for both sides: ids, the encoded envelopes the toolkit receives, the state
// key and value each step writes, and the outbox row each step of a "+send" case adds.
struct Workload {
    std::vector<choreo::MessageId> ids;
    choreo::TimeMs sent_at_ms = 0;
    std::vector<choreo::Bytes> envelopes;
    std::vector<std::string> keys;
    std::vector<choreo::Bytes> values;
    std::vector<choreo::MessageId> sent_ids;       // derive_id(input, 0), as the kernel derives it
    std::vector<std::string> correlations;         // the sent message's partition key
    std::vector<choreo::Bytes> sent_envelopes;     // what the kernel encodes for the send
};

struct Measurement {
    double seconds = 0;
    double first_seconds = -1;     // from the start to the first step resolved (-1: not measured)
    double cpu_seconds = 0;        // of the thread doing the work (the runtime thread, or the loop)
    std::int64_t dedup_rows = -1;  // counted in the file afterwards
    std::int64_t state_rows = -1;
    std::int64_t outbox_rows = -1;
    std::uint64_t commits = 0;     // transactions that committed a batch
    std::string error{};           // empty when every step was applied exactly once

    double steps_per_second(std::size_t steps) const { return seconds > 0 ? static_cast<double>(steps) / seconds : 0; }
    double cpu_us_per_step(std::size_t steps) const { return steps > 0 ? 1e6 * cpu_seconds / static_cast<double>(steps) : 0; }
};

// CPU time of the calling thread: with the wall time it tells CPU work from waiting on fsync.
inline double thread_cpu_seconds() {
    timespec now{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

inline const choreo::Address& bank_address() {
    static const choreo::Address address = choreo::Address::unicast("bank", "1");
    return address;
}
inline const choreo::Address& teller_address() {
    static const choreo::Address address = choreo::Address::unicast("teller", "1");
    return address;
}
inline const choreo::Address& ledger_address() {
    static const choreo::Address address = choreo::Address::unicast("ledger", "1");
    return address;
}

// The send of a "+send" step, encoded as the kernel encodes it (same fields, same sizes).
inline void add_send(Workload& workload, const choreo::Envelope& input, const Deposit& deposit) {
    choreo::Envelope sent;
    sent.id = choreo::derive_id(input.id, 0);
    sent.kind = "credited";
    sent.from = bank_address();
    sent.to = ledger_address();
    sent.correlation = input.correlation;
    sent.causation = input.id.to_string();
    sent.sent_at_ms = workload.sent_at_ms;
    sent.body = choreo::pack(deposit);
    choreo::Result<choreo::Bytes> encoded = choreo::encode_envelope(sent, choreo::MessageLimits{});
    CHOREO_ASSERT(encoded.ok());
    workload.sent_ids.push_back(sent.id);
    workload.correlations.push_back(sent.correlation);
    workload.sent_envelopes.push_back(std::move(encoded).value());
}

inline Workload make_workload(std::size_t steps, bool send) {
    choreo::SystemClock clock;
    choreo::SystemRandom random;
    choreo::IdGenerator ids{clock, random};
    Workload workload;
    workload.sent_at_ms = clock.now_ms();
    char account[32];
    for (std::size_t index = 0; index < steps; index++) {
        std::snprintf(account, sizeof account, "account/%08zu", index);
        const Deposit deposit{account, static_cast<std::int64_t>(index % 1000) + 1};
        choreo::Envelope envelope;
        envelope.id = ids.next();
        envelope.kind = "deposit";
        envelope.from = teller_address();
        envelope.to = bank_address();
        envelope.correlation = envelope.id.to_string();
        envelope.sent_at_ms = workload.sent_at_ms;
        envelope.body = choreo::pack(deposit);
        choreo::Result<choreo::Bytes> encoded = choreo::encode_envelope(envelope, choreo::MessageLimits{});
        CHOREO_ASSERT(encoded.ok());
        workload.ids.push_back(envelope.id);
        workload.envelopes.push_back(std::move(encoded).value());
        workload.keys.push_back(deposit.account);
        workload.values.push_back(choreo::pack(deposit));  // what the handler saves
        if (send) add_send(workload, envelope, deposit);
    }
    CHOREO_ASSERT(workload.ids.size() == steps);
    if (send) CHOREO_ASSERT(workload.sent_envelopes.size() == steps);
    return workload;
}

inline void remove_database(const fs::path& file) {
    std::error_code ignored;
    fs::remove(file, ignored);
    fs::remove(file.string() + "-wal", ignored);
    fs::remove(file.string() + "-shm", ignored);
}

// A fresh toolkit store for a measurement: `file` removed first, synchronous = FULL.
inline choreo::Result<std::unique_ptr<choreo::SqliteStore>> open_fresh_store(const fs::path& file) {
    remove_database(file);
    choreo::SqliteStoreOptions store_options;
    store_options.path = file.string();
    store_options.synchronous = choreo::SqliteSync::full;
    return choreo::SqliteStore::open(store_options);
}

// ---- raw SQLite ----------------------------------------------------------------------------

struct CloseDatabase {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct FinalizeStatement {
    void operator()(sqlite3_stmt* statement) const { sqlite3_finalize(statement); }
};
using Database = std::unique_ptr<sqlite3, CloseDatabase>;
using Statement = std::unique_ptr<sqlite3_stmt, FinalizeStatement>;

inline std::string sqlite_error(sqlite3* db, const char* what) { return std::string(what) + ": " + sqlite3_errmsg(db); }

// The pragmas and the tables of the SQLite store (durability/sqlite/src/sqlite_schema.cpp).
inline constexpr const char* raw_setup_sql = R"sql(
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA wal_autocheckpoint = 1000;
PRAGMA cache_size = -8192;
PRAGMA journal_size_limit = 67108864;
PRAGMA temp_store = MEMORY;
CREATE TABLE dedup (id BLOB PRIMARY KEY, sent_at INTEGER NOT NULL) STRICT, WITHOUT ROWID;
CREATE INDEX dedup_by_sent_at ON dedup (sent_at);
CREATE TABLE state (key TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT;
CREATE TABLE outbox (
  id BLOB PRIMARY KEY, to_address TEXT NOT NULL, route TEXT NOT NULL, partition_key TEXT NOT NULL,
  bytes BLOB NOT NULL, sent_at INTEGER NOT NULL, settled INTEGER NOT NULL CHECK (settled IN (0, 1)),
  settled_at INTEGER NOT NULL) STRICT;
CREATE INDEX outbox_unsettled ON outbox (id) WHERE settled = 0;
CREATE INDEX outbox_by_settled_at ON outbox (settled_at) WHERE settled = 1;
)sql";

inline std::optional<std::string> open_raw(const fs::path& file, Database& db) {
    sqlite3* handle = nullptr;
    const int opened = sqlite3_open_v2(file.c_str(), &handle,
                                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    db.reset(handle);
    if (opened != SQLITE_OK) return sqlite_error(handle, "open");
    return std::nullopt;
}

inline std::optional<std::string> prepare(sqlite3* db, const char* sql, Statement& statement) {
    sqlite3_stmt* prepared = nullptr;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &prepared, nullptr) != SQLITE_OK) {
        return sqlite_error(db, sql);
    }
    statement.reset(prepared);
    return std::nullopt;
}

inline std::int64_t count_rows(const fs::path& file, const char* table) {
    Database db;
    if (open_raw(file, db)) return -1;
    Statement count;
    if (prepare(db.get(), (std::string("SELECT count(*) FROM ") + table).c_str(), count)) return -1;
    if (sqlite3_step(count.get()) != SQLITE_ROW) return -1;
    return sqlite3_column_int64(count.get(), 0);
}

inline std::array<std::uint8_t, 16> id_bytes(const choreo::MessageId& id) { return id.to_bytes(); }  // as the store keys them

// The statements the store runs for these steps, with the same SQL.
struct RawStatements {
    Statement begin, commit, find_dedup, insert_dedup, put_state, insert_outbox, settle_outbox;
};

inline std::optional<std::string> prepare_raw(sqlite3* db, RawStatements& statements) {
    if (sqlite3_exec(db, raw_setup_sql, nullptr, nullptr, nullptr) != SQLITE_OK) return sqlite_error(db, "setup");
    const std::array<std::pair<Statement*, const char*>, 7> all = {{
        {&statements.begin, "BEGIN IMMEDIATE"},
        {&statements.commit, "COMMIT"},
        {&statements.find_dedup, "SELECT 1 FROM dedup WHERE id = ?1"},
        {&statements.insert_dedup, "INSERT INTO dedup (id, sent_at) VALUES (?1, ?2)"},
        {&statements.put_state, "INSERT INTO state (key, value) VALUES (?1, ?2) "
                                "ON CONFLICT (key) DO UPDATE SET value = excluded.value"},
        {&statements.insert_outbox, "INSERT INTO outbox (id, to_address, route, partition_key, bytes, sent_at, "
                                    "settled, settled_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
                                    "ON CONFLICT (id) DO NOTHING"},
        {&statements.settle_outbox, "UPDATE outbox SET settled = 1, settled_at = ?2 WHERE id = ?1 AND settled = 0"},
    }};
    for (const auto& [statement, sql] : all) {
        if (auto failed = prepare(db, sql, *statement)) return failed;
    }
    return std::nullopt;
}

// Steps a statement that returns no row and resets it.
inline bool run_statement(sqlite3_stmt* statement) {
    const int code = sqlite3_step(statement);
    sqlite3_reset(statement);
    return code == SQLITE_DONE;
}

inline bool raw_insert_outbox(RawStatements& statements, const Workload& workload, std::size_t index) {
    static const std::string to = ledger_address().to_string();
    sqlite3_stmt* insert = statements.insert_outbox.get();
    const std::array<std::uint8_t, 16> key = id_bytes(workload.sent_ids[index]);
    const std::string& correlation = workload.correlations[index];
    const choreo::Bytes& bytes = workload.sent_envelopes[index];
    sqlite3_bind_blob(insert, 1, key.data(), 16, SQLITE_STATIC);
    sqlite3_bind_text(insert, 2, to.data(), static_cast<int>(to.size()), SQLITE_STATIC);
    sqlite3_bind_text(insert, 3, "", 0, SQLITE_STATIC);
    sqlite3_bind_text(insert, 4, correlation.data(), static_cast<int>(correlation.size()), SQLITE_STATIC);
    sqlite3_bind_blob(insert, 5, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC);
    sqlite3_bind_int64(insert, 6, workload.sent_at_ms);
    sqlite3_bind_int64(insert, 7, 0);
    sqlite3_bind_int64(insert, 8, 0);
    return run_statement(insert);
}

// One exactly-once step, the way the toolkit does it: the dedup read, then the writes.
inline bool raw_step(RawStatements& statements, const Workload& workload, std::size_t index, bool send) {
    const std::array<std::uint8_t, 16> key = id_bytes(workload.ids[index]);
    sqlite3_bind_blob(statements.find_dedup.get(), 1, key.data(), 16, SQLITE_STATIC);
    const int found = sqlite3_step(statements.find_dedup.get());
    sqlite3_reset(statements.find_dedup.get());
    if (found != SQLITE_DONE) return false;  // a row (a duplicate) or an error: neither expected
    sqlite3_bind_blob(statements.insert_dedup.get(), 1, key.data(), 16, SQLITE_STATIC);
    sqlite3_bind_int64(statements.insert_dedup.get(), 2, workload.sent_at_ms);
    if (!run_statement(statements.insert_dedup.get())) return false;
    const std::string& state_key = workload.keys[index];
    const choreo::Bytes& value = workload.values[index];
    sqlite3_bind_text(statements.put_state.get(), 1, state_key.data(), static_cast<int>(state_key.size()),
                      SQLITE_STATIC);
    sqlite3_bind_blob(statements.put_state.get(), 2, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
    if (!run_statement(statements.put_state.get())) return false;
    return !send || raw_insert_outbox(statements, workload, index);
}

// The toolkit settles an outbox row when its confirmation comes back, in a later batch: here,
// the rows of the previous batch.
inline bool raw_settle(RawStatements& statements, const Workload& workload, std::size_t first, std::size_t last) {
    for (std::size_t index = first; index < last; index++) {
        const std::array<std::uint8_t, 16> key = id_bytes(workload.sent_ids[index]);
        sqlite3_bind_blob(statements.settle_outbox.get(), 1, key.data(), 16, SQLITE_STATIC);
        sqlite3_bind_int64(statements.settle_outbox.get(), 2, workload.sent_at_ms);
        if (!run_statement(statements.settle_outbox.get())) return false;
    }
    return true;
}

inline bool raw_batch(RawStatements& statements, const Workload& workload, std::size_t first, const Case& shape) {
    const std::size_t last = std::min(workload.ids.size(), first + shape.batch);
    if (!run_statement(statements.begin.get())) return false;
    if (shape.send && first > 0 && !raw_settle(statements, workload, first - shape.batch, first)) return false;
    for (std::size_t index = first; index < last; index++) {
        if (!raw_step(statements, workload, index, shape.send)) return false;
    }
    return run_statement(statements.commit.get());
}

inline Measurement run_raw(const Workload& workload, const Case& shape, const fs::path& file) {
    Measurement measurement;
    remove_database(file);
    {
        Database db;
        RawStatements statements;
        if (auto failed = open_raw(file, db)) return {.error = *failed};
        if (auto failed = prepare_raw(db.get(), statements)) return {.error = *failed};
        const Clock::time_point start = Clock::now();
        const double cpu_start = thread_cpu_seconds();
        for (std::size_t first = 0; first < workload.ids.size(); first += shape.batch) {
            if (!raw_batch(statements, workload, first, shape)) return {.error = sqlite_error(db.get(), "batch")};
            measurement.commits++;
        }
        measurement.seconds = std::chrono::duration<double>(Clock::now() - start).count();
        measurement.cpu_seconds = thread_cpu_seconds() - cpu_start;
    }
    measurement.dedup_rows = count_rows(file, "dedup");
    measurement.state_rows = count_rows(file, "state");
    measurement.outbox_rows = count_rows(file, "outbox");
    return measurement;
}

// Counts resolved inputs (applied, or refused: then the run fails) on the runtime thread and
// notes when the last one committed.
class Finish {
public:
    Finish(std::uint64_t steps, Clock::duration timeout) : steps_(steps), timeout_(timeout) {}

    // On the runtime thread, whose CPU time then is the CPU time of the whole run.
    void resolved() {
        const std::uint64_t count = ++resolved_;
        if (count == 1) {
            std::lock_guard lock{mutex_};
            first_ = Clock::now();
        }
        if (count != steps_) return;
        std::lock_guard lock{mutex_};
        end_ = Clock::now();
        cpu_seconds_ = thread_cpu_seconds();
        done_ = true;
        changed_.notify_all();
    }
    void runner_ended() {
        std::lock_guard lock{mutex_};
        runner_ended_ = true;
        changed_.notify_all();
    }
    // The time the last input was resolved, or nothing when the runner ended first or timed out.
    std::optional<Clock::time_point> wait() {
        std::unique_lock lock{mutex_};
        changed_.wait_for(lock, timeout_, [&] { return done_ || runner_ended_; });
        if (!done_) return std::nullopt;
        return end_;
    }
    double cpu_seconds() {
        std::lock_guard lock{mutex_};
        return cpu_seconds_;
    }
    // When the first input was resolved; read once wait() returned a time.
    Clock::time_point first() {
        std::lock_guard lock{mutex_};
        return first_;
    }

private:
    const std::uint64_t steps_;
    const Clock::duration timeout_;
    std::atomic<std::uint64_t> resolved_{0};
    std::mutex mutex_;
    std::condition_variable changed_;
    bool done_ = false;
    bool runner_ended_ = false;
    Clock::time_point first_{};
    Clock::time_point end_{};
    double cpu_seconds_ = 0;
};

inline std::string check_stats(const choreo::ServiceStats& stats, std::size_t steps) {
    if (stats.applied != steps) return "applied " + std::to_string(stats.applied) + " of " + std::to_string(steps);
    if (stats.duplicates != 0 || stats.dead_lettered != 0 || stats.retries != 0) {
        return "duplicates " + std::to_string(stats.duplicates) + ", dead letters " +
               std::to_string(stats.dead_lettered) + ", retries " + std::to_string(stats.retries);
    }
    return {};
}

inline double median(std::vector<double> values) {
    if (values.empty()) return 0;
    std::sort(values.begin(), values.end());
    const std::size_t middle = values.size() / 2;
    return values.size() % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

// Runs the service until all N inputs are resolved; the measurement's time and CPU, or an error
// (also when an input was refused instead of applied).
inline Measurement run_service(choreo::Service& service, std::size_t steps, Clock::duration timeout) {
    Finish finish{steps, timeout};
    service.set_observer([&finish](const choreo::TraceEvent& event) {
        const bool resolved = event.kind == choreo::TraceKind::applied || event.kind == choreo::TraceKind::duplicate ||
                              event.kind == choreo::TraceKind::dead_lettered;
        if (resolved) finish.resolved();
    });
    choreo::Status ended;
    const Clock::time_point start = Clock::now();
    std::thread runner{[&] {
        pthread_setname_np(pthread_self(), "choreo-runtime");  // for profilers: the timed thread
        ended = service.run();
        finish.runner_ended();
    }};
    const std::optional<Clock::time_point> end = finish.wait();
    service.stop();
    runner.join();
    if (!ended.ok()) return {.error = "the service stopped: " + ended.to_string()};
    if (!end) return {.error = "timed out; " + check_stats(service.stats(), steps)};
    Measurement measurement;
    measurement.seconds = std::chrono::duration<double>(*end - start).count();
    measurement.first_seconds = std::chrono::duration<double>(finish.first() - start).count();
    measurement.cpu_seconds = finish.cpu_seconds();
    const choreo::ServiceStats stats = service.stats();
    measurement.commits = stats.commits;
    measurement.error = check_stats(stats, steps);
    return measurement;
}

inline std::optional<fs::path> make_dir(const std::string& wanted) {
    if (!wanted.empty()) {
        std::error_code failed;
        fs::create_directories(wanted, failed);
        if (failed) return std::nullopt;
        return fs::path(wanted);
    }
    std::string pattern = (fs::temp_directory_path() / "choreo-bench-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) return std::nullopt;
    return fs::path(pattern);
}


}  // namespace choreo_bench
