// sqlite_group_commit — durable exactly-once steps per second on SQLite, next to a raw SQLite loop
// doing the same writes, measured in the same run (issue 4, item 2).
//
// Toolkit side: a real choreo::Service over a MemoryTransport and a SqliteStore file
// (synchronous = FULL, WAL: the store's defaults), batch_size_max = B. Its one handler, for
// "deposit", saves one state key, so every exactly-once step commits one dedup row and one state
// row. N encoded envelopes are queued for it before the clock starts, so what is timed is the
// runtime's path: receive → decode → dedup read → handler → one commit per batch → ack. The
// clock stops when the last of the N inputs is reported resolved (after its batch committed).
//
// Raw side: the sqlite3 C API on a fresh file with the same pragmas and the same tables,
// prepared statements, and per batch of B: BEGIN IMMEDIATE; B × (dedup point lookup, INSERT
// dedup, upsert state); COMMIT. Same N, same ids, keys and values.
//
// The "+send" row (batch 256 unless --no-send) adds one send per step: the handler also sends a
// message to a sink that acknowledges everything, so each step adds an outbox row, settled in a
// later batch when its confirmation comes back. Its raw loop inserts the same outbox rows and
// settles each batch's rows in the next batch.
//
// Each measurement runs `--repeats` times, toolkit and raw interleaved; the table shows medians,
// and the CPU time per step of the thread doing the work: the rest of the wall time is waiting
// (fsync; for the toolkit also its batch_delay_us_max). Target (issue 4): at batch 256 the toolkit
// reaches at least 70% of the raw loop. The program fails (exit 1) only when a side did not apply
// every step exactly once (N dedup, state and outbox rows); never on timing.
//
//   ./sqlite_group_commit                      # batch 1, 16, 256 and 256+send: under a minute
//   ./sqlite_group_commit --quick              # tiny N, one run each: the ctest smoke test
//   ./sqlite_group_commit --batch 256 --steps 200000 --repeats 5 --dir /var/tmp/bench
//   ./sqlite_group_commit --batch 256 --no-send --only toolkit   # for a profiler: the timed
//                                              # thread is named choreo-runtime (perf --comm)
//   ./sqlite_group_commit --batch-delay-us 0   # ServiceOptions::batch_delay_us_max (default 500)
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>  // mkdtemp
#include <time.h>    // clock_gettime

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "choreo/codec.h"
#include "choreo/durability/sqlite_store.h"
#include "choreo/service.h"
#include "choreo/system.h"
#include "choreo/transport/memory_transport.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::size_t batch_sizes[] = {1, 16, 256};
constexpr std::size_t send_batch_size = 256;  // the batch size of the "+send" row
constexpr std::size_t steps_max = 10'000'000;
constexpr std::size_t repeats_max = 100;
constexpr std::size_t sink_receive_max = 4096;
// A run that stops making progress fails instead of hanging.
constexpr auto run_timeout = std::chrono::minutes(5);
constexpr auto run_timeout_quick = std::chrono::seconds(60);

struct Deposit {
    std::string account;
    std::int64_t amount = 0;
    MSGPACK_DEFINE_MAP(account, amount);
};

struct Options {
    bool quick = false;
    std::size_t steps = 0;      // 0: the default for each batch size
    std::size_t repeats = 3;
    std::size_t batch = 0;      // 0: every batch size
    bool run_toolkit = true;
    bool run_raw = true;
    bool run_send = true;       // the "+send" row
    std::int64_t batch_delay_us = -1;  // -1: ServiceOptions' default
    std::string dir{};          // empty: a fresh temporary directory, removed at the end
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
double thread_cpu_seconds() {
    timespec now{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

std::size_t default_steps(std::size_t batch, bool quick) {
    // Batch 1 pays one fsync per step; larger batches get more steps so each run lasts ~1 s.
    if (quick) return batch == 1 ? 32 : batch * 4;
    if (batch == 1) return 1'000;
    if (batch == 16) return 16'000;
    return 100'000;
}

std::optional<std::size_t> parse_count(const char* text, std::size_t max) {
    char* end = nullptr;
    const unsigned long long value = std::strtoull(text, &end, 10);
    if (end == text || *end != '\0' || value == 0 || value > max) return std::nullopt;
    return static_cast<std::size_t>(value);
}

// Flags without a value; false when `flag` is not one of them.
bool parse_switch(const std::string& flag, Options& options) {
    if (flag == "--quick") {
        options.quick = true;
        options.repeats = 1;
    } else if (flag == "--no-send") {
        options.run_send = false;
    } else {
        return false;
    }
    return true;
}

std::optional<Options> parse_options(int argc, char** argv) {
    Options options;
    for (int index = 1; index < argc; index++) {
        const std::string flag = argv[index];
        if (parse_switch(flag, options)) continue;
        const char* value = index + 1 < argc ? argv[index + 1] : nullptr;
        if (value == nullptr) return std::nullopt;
        index++;
        std::optional<std::size_t> count;
        if (flag == "--dir") {
            options.dir = value;
        } else if (flag == "--only" && (std::strcmp(value, "toolkit") == 0 || std::strcmp(value, "raw") == 0)) {
            options.run_toolkit = std::strcmp(value, "toolkit") == 0;
            options.run_raw = !options.run_toolkit;
        } else if (flag == "--steps" && (count = parse_count(value, steps_max))) {
            options.steps = *count;
        } else if (flag == "--repeats" && (count = parse_count(value, repeats_max))) {
            options.repeats = *count;
        } else if (flag == "--batch" && (count = parse_count(value, 1 << 16))) {
            options.batch = *count;
        } else if (flag == "--batch-delay-us" && std::strcmp(value, "0") == 0) {
            options.batch_delay_us = 0;
        } else if (flag == "--batch-delay-us" && (count = parse_count(value, 1'000'000))) {
            options.batch_delay_us = static_cast<std::int64_t>(*count);
        } else {
            return std::nullopt;
        }
    }
    return options;
}

const choreo::Address& bank_address() {
    static const choreo::Address address = choreo::Address::unicast("bank", "1");
    return address;
}
const choreo::Address& teller_address() {
    static const choreo::Address address = choreo::Address::unicast("teller", "1");
    return address;
}
const choreo::Address& ledger_address() {
    static const choreo::Address address = choreo::Address::unicast("ledger", "1");
    return address;
}

// The send of a "+send" step, encoded as the kernel encodes it (same fields, same sizes).
void add_send(Workload& workload, const choreo::Envelope& input, const Deposit& deposit) {
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

Workload make_workload(std::size_t steps, bool send) {
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

void remove_database(const fs::path& file) {
    std::error_code ignored;
    fs::remove(file, ignored);
    fs::remove(file.string() + "-wal", ignored);
    fs::remove(file.string() + "-shm", ignored);
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

std::string sqlite_error(sqlite3* db, const char* what) { return std::string(what) + ": " + sqlite3_errmsg(db); }

// The pragmas and the tables of the SQLite store (durability/sqlite/src/sqlite_schema.cpp).
constexpr const char* raw_setup_sql = R"sql(
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

std::optional<std::string> open_raw(const fs::path& file, Database& db) {
    sqlite3* handle = nullptr;
    const int opened = sqlite3_open_v2(file.c_str(), &handle,
                                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    db.reset(handle);
    if (opened != SQLITE_OK) return sqlite_error(handle, "open");
    return std::nullopt;
}

std::optional<std::string> prepare(sqlite3* db, const char* sql, Statement& statement) {
    sqlite3_stmt* prepared = nullptr;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &prepared, nullptr) != SQLITE_OK) {
        return sqlite_error(db, sql);
    }
    statement.reset(prepared);
    return std::nullopt;
}

std::int64_t count_rows(const fs::path& file, const char* table) {
    Database db;
    if (open_raw(file, db)) return -1;
    Statement count;
    if (prepare(db.get(), (std::string("SELECT count(*) FROM ") + table).c_str(), count)) return -1;
    if (sqlite3_step(count.get()) != SQLITE_ROW) return -1;
    return sqlite3_column_int64(count.get(), 0);
}

std::array<std::uint8_t, 16> id_bytes(const choreo::MessageId& id) {  // as the store keys them
    std::array<std::uint8_t, 16> bytes{};
    for (std::size_t index = 0; index < 8; index++) {
        bytes[index] = static_cast<std::uint8_t>(id.high() >> (56 - 8 * index));
        bytes[8 + index] = static_cast<std::uint8_t>(id.low() >> (56 - 8 * index));
    }
    return bytes;
}

// The statements the store runs for these steps, with the same SQL.
struct RawStatements {
    Statement begin, commit, find_dedup, insert_dedup, put_state, insert_outbox, settle_outbox;
};

std::optional<std::string> prepare_raw(sqlite3* db, RawStatements& statements) {
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
bool run_statement(sqlite3_stmt* statement) {
    const int code = sqlite3_step(statement);
    sqlite3_reset(statement);
    return code == SQLITE_DONE;
}

bool raw_insert_outbox(RawStatements& statements, const Workload& workload, std::size_t index) {
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
bool raw_step(RawStatements& statements, const Workload& workload, std::size_t index, bool send) {
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
bool raw_settle(RawStatements& statements, const Workload& workload, std::size_t first, std::size_t last) {
    for (std::size_t index = first; index < last; index++) {
        const std::array<std::uint8_t, 16> key = id_bytes(workload.sent_ids[index]);
        sqlite3_bind_blob(statements.settle_outbox.get(), 1, key.data(), 16, SQLITE_STATIC);
        sqlite3_bind_int64(statements.settle_outbox.get(), 2, workload.sent_at_ms);
        if (!run_statement(statements.settle_outbox.get())) return false;
    }
    return true;
}

bool raw_batch(RawStatements& statements, const Workload& workload, std::size_t first, const Case& shape) {
    const std::size_t last = std::min(workload.ids.size(), first + shape.batch);
    if (!run_statement(statements.begin.get())) return false;
    if (shape.send && first > 0 && !raw_settle(statements, workload, first - shape.batch, first)) return false;
    for (std::size_t index = first; index < last; index++) {
        if (!raw_step(statements, workload, index, shape.send)) return false;
    }
    return run_statement(statements.commit.get());
}

Measurement run_raw(const Workload& workload, const Case& shape, const fs::path& file) {
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

// ---- the toolkit ---------------------------------------------------------------------------

// Counts resolved inputs (applied, or refused: then the run fails) on the runtime thread and
// notes when the last one committed.
class Finish {
public:
    Finish(std::uint64_t steps, Clock::duration timeout) : steps_(steps), timeout_(timeout) {}

    // On the runtime thread, whose CPU time then is the CPU time of the whole run.
    void resolved() {
        if (++resolved_ != steps_) return;
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

private:
    const std::uint64_t steps_;
    const Clock::duration timeout_;
    std::atomic<std::uint64_t> resolved_{0};
    std::mutex mutex_;
    std::condition_variable changed_;
    bool done_ = false;
    bool runner_ended_ = false;
    Clock::time_point end_{};
    double cpu_seconds_ = 0;
};

// The receiver of the "+send" messages: acknowledges everything, on its own thread, so the
// service's outbox rows are confirmed and settle as they would with a live peer.
class Sink {
public:
    explicit Sink(choreo::MemoryNetwork& network) : transport_(network, ledger_address()) {
        thread_ = std::thread{[this] { drain(); }};
    }
    ~Sink() {
        transport_.close();  // the blocked receive returns closed
        thread_.join();
    }
    Sink(const Sink&) = delete;
    Sink& operator=(const Sink&) = delete;

private:
    void drain() {
        choreo::ReceiveBatch batch;
        std::vector<choreo::DeliveryTag> tags;
        for (;;) {
            batch.clear();
            if (!transport_.receive(batch, sink_receive_max, 50'000).ok()) return;
            tags.clear();
            for (const choreo::Delivery& delivery : batch.deliveries) tags.push_back(delivery.tag);
            if (!transport_.acknowledge(tags).ok()) return;
        }
    }

    choreo::MemoryTransport transport_;
    std::thread thread_;
};

choreo::ServiceOptions service_options(std::size_t batch, std::int64_t batch_delay_us) {
    choreo::ServiceOptions options;
    options.name = "bank";
    options.instance = "1";
    options.batch_size_max = batch;
    options.step_workers_max = 0;  // no durable functions here
    if (batch_delay_us >= 0) options.batch_delay_us_max = batch_delay_us;
    return options;
}

std::string check_stats(const choreo::ServiceStats& stats, std::size_t steps) {
    if (stats.applied != steps) return "applied " + std::to_string(stats.applied) + " of " + std::to_string(steps);
    if (stats.duplicates != 0 || stats.dead_lettered != 0 || stats.retries != 0) {
        return "duplicates " + std::to_string(stats.duplicates) + ", dead letters " +
               std::to_string(stats.dead_lettered) + ", retries " + std::to_string(stats.retries);
    }
    return {};
}

// Queues every envelope for the service before it starts: the sender is not what is measured.
bool preload(choreo::MemoryNetwork& network, const Workload& workload) {
    choreo::MemoryTransport teller{network, teller_address()};
    std::vector<choreo::OutgoingMessage> messages;
    messages.reserve(workload.envelopes.size());
    for (std::size_t index = 0; index < workload.envelopes.size(); index++) {
        messages.push_back({workload.ids[index], bank_address(), {}, {}, workload.envelopes[index]});
    }
    choreo::Result<std::size_t> accepted = teller.send(messages);
    return accepted.ok() && *accepted == messages.size();
}

void register_handler(choreo::Service& service, bool send) {
    if (send) {
        service.on("deposit", [](choreo::Context& ctx, const Deposit& deposit) {
            ctx.save(deposit.account, deposit);
            ctx.send("ledger/1", "credited", deposit);
        });
    } else {
        service.on("deposit", [](choreo::Context& ctx, const Deposit& deposit) { ctx.save(deposit.account, deposit); });
    }
}

// Runs the service until all N inputs are resolved; the measurement's time and CPU, or an error
// (also when an input was refused instead of applied).
Measurement run_service(choreo::Service& service, std::size_t steps, Clock::duration timeout) {
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
    measurement.cpu_seconds = finish.cpu_seconds();
    const choreo::ServiceStats stats = service.stats();
    measurement.commits = stats.commits;
    measurement.error = check_stats(stats, steps);
    return measurement;
}

Measurement run_toolkit(const Workload& workload, const Case& shape, const Options& options, const fs::path& file) {
    const std::size_t steps = workload.ids.size();
    remove_database(file);
    Measurement measurement;
    {
        choreo::SqliteStoreOptions store_options;
        store_options.path = file.string();
        store_options.synchronous = choreo::SqliteSync::full;
        choreo::Result<std::unique_ptr<choreo::SqliteStore>> store = choreo::SqliteStore::open(store_options);
        if (!store.ok()) return {.error = store.status().to_string()};
        choreo::MemoryNetwork::Options network_options;
        network_options.queue_messages_max = steps + 1;
        choreo::MemoryNetwork network{network_options};
        if (!preload(network, workload)) return {.error = "the memory network refused the preload"};
        std::optional<Sink> sink;
        if (shape.send) sink.emplace(network);
        choreo::MemoryTransport transport{network, bank_address()};
        choreo::Service service{service_options(shape.batch, options.batch_delay_us), transport, **store};
        register_handler(service, shape.send);
        measurement = run_service(service, steps, options.quick ? Clock::duration{run_timeout_quick} : run_timeout);
    }
    measurement.dedup_rows = count_rows(file, "dedup");
    measurement.state_rows = count_rows(file, "state");
    measurement.outbox_rows = count_rows(file, "outbox");
    return measurement;
}

// ---- the report ----------------------------------------------------------------------------

// Each side must have applied every step exactly once: N dedup rows, N state rows, and N outbox
// rows with one send per step (none without).
std::string verify(const Measurement& measurement, std::size_t steps, bool send) {
    if (!measurement.error.empty()) return measurement.error;
    const auto expected = static_cast<std::int64_t>(steps);
    const std::int64_t outbox_expected = send ? expected : 0;
    if (measurement.dedup_rows != expected || measurement.state_rows != expected ||
        measurement.outbox_rows != outbox_expected) {
        return "expected " + std::to_string(steps) + " dedup and state rows and " +
               std::to_string(outbox_expected) + " outbox rows, found " + std::to_string(measurement.dedup_rows) +
               ", " + std::to_string(measurement.state_rows) + " and " + std::to_string(measurement.outbox_rows);
    }
    return {};
}

double median(std::vector<double> values) {
    if (values.empty()) return 0;
    std::sort(values.begin(), values.end());
    const std::size_t middle = values.size() / 2;
    return values.size() % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

// One side's runs of one case.
struct Runs {
    std::vector<double> steps_per_second;
    std::vector<double> cpu_us_per_step;
};

struct Row {
    Case shape;
    std::size_t steps = 0;
    Runs toolkit;
    Runs raw;
};

std::string case_name(const Case& shape) { return std::to_string(shape.batch) + (shape.send ? "+send" : ""); }

std::string runs_text(const std::vector<double>& runs) {
    std::string text;
    for (double run : runs) text += (text.empty() ? "" : " ") + std::to_string(static_cast<long long>(run));
    return text;
}

void print_table(const std::vector<Row>& rows, const Options& options) {
    std::printf("\ndurable exactly-once steps per second, SQLite synchronous=FULL, WAL; median of %zu run%s\n",
                options.repeats, options.repeats == 1 ? "" : "s");
    std::printf("%9s %8s %16s %16s %12s %20s %16s\n", "batch", "steps", "toolkit steps/s", "raw steps/s",
                "toolkit/raw", "toolkit cpu us/step", "raw cpu us/step");
    for (const Row& row : rows) {
        const double toolkit = median(row.toolkit.steps_per_second);
        const double raw = median(row.raw.steps_per_second);
        char ratio[32] = "-";
        if (toolkit > 0 && raw > 0) std::snprintf(ratio, sizeof ratio, "%.1f%%", 100 * toolkit / raw);
        std::printf("%9s %8zu %16.0f %16.0f %12s %20.1f %16.1f\n", case_name(row.shape).c_str(), row.steps, toolkit,
                    raw, ratio, median(row.toolkit.cpu_us_per_step), median(row.raw.cpu_us_per_step));
    }
    for (const Row& row : rows) {
        std::printf("  batch %s runs (steps/s): toolkit [%s], raw [%s]\n", case_name(row.shape).c_str(),
                    runs_text(row.toolkit.steps_per_second).c_str(), runs_text(row.raw.steps_per_second).c_str());
    }
    for (const Row& row : rows) {
        if (row.shape.batch != 256 || row.shape.send) continue;
        if (row.toolkit.steps_per_second.empty() || row.raw.steps_per_second.empty()) continue;
        const double percent = 100 * median(row.toolkit.steps_per_second) / median(row.raw.steps_per_second);
        std::printf("target (issue 4): at batch 256, toolkit >= 70%% of raw: %s (%.1f%%)\n",
                    percent >= 70 ? "met" : "NOT met", percent);
    }
}

// Reports one run of one side; false when it did not apply every step exactly once.
bool record(const char* side, const Measurement& measurement, const Row& row, Runs& runs) {
    const std::string failure = verify(measurement, row.steps, row.shape.send);
    if (!failure.empty()) {
        std::printf("  batch %s %s: FAILED: %s\n", case_name(row.shape).c_str(), side, failure.c_str());
        return false;
    }
    runs.steps_per_second.push_back(measurement.steps_per_second(row.steps));
    runs.cpu_us_per_step.push_back(measurement.cpu_us_per_step(row.steps));
    std::printf("  batch %9s %-7s %8zu steps in %7.3f s: %9.0f steps/s, cpu %6.1f us/step, %6llu commits\n",
                case_name(row.shape).c_str(), side, row.steps, measurement.seconds, runs.steps_per_second.back(),
                runs.cpu_us_per_step.back(), static_cast<unsigned long long>(measurement.commits));
    return true;
}

bool measure_raw(const Workload& workload, const fs::path& dir, Row& row) {
    const fs::path file = dir / "raw.db";
    const Measurement measurement = run_raw(workload, row.shape, file);
    remove_database(file);
    return record("raw", measurement, row, row.raw);
}

bool measure_toolkit(const Workload& workload, const Options& options, const fs::path& dir, Row& row) {
    const fs::path file = dir / "toolkit.db";
    const Measurement measurement = run_toolkit(workload, row.shape, options, file);
    remove_database(file);
    return record("toolkit", measurement, row, row.toolkit);
}

bool measure_case(const Case& shape, const Options& options, const fs::path& dir, Row& row) {
    row.shape = shape;
    row.steps = options.steps != 0 ? options.steps : default_steps(shape.batch, options.quick);
    const Workload workload = make_workload(row.steps, shape.send);
    bool ok = true;
    for (std::size_t repeat = 0; repeat < options.repeats; repeat++) {
        // Alternate which side goes first, so neither always meets a warmer (or busier) disk.
        const bool raw_first = repeat % 2 == 1;
        if (options.run_raw && raw_first) ok &= measure_raw(workload, dir, row);
        if (options.run_toolkit) ok &= measure_toolkit(workload, options, dir, row);
        if (options.run_raw && !raw_first) ok &= measure_raw(workload, dir, row);
    }
    return ok;
}

std::vector<Case> cases_of(const Options& options) {
    std::vector<Case> cases;
    if (options.batch != 0) {
        cases.push_back({options.batch, false});
    } else {
        for (std::size_t batch : batch_sizes) cases.push_back({batch, false});
    }
    if (options.run_send && (options.batch == 0 || options.batch == send_batch_size)) {
        cases.push_back({send_batch_size, true});
    }
    return cases;
}

std::optional<fs::path> make_dir(const Options& options) {
    if (!options.dir.empty()) {
        std::error_code failed;
        fs::create_directories(options.dir, failed);
        if (failed) return std::nullopt;
        return fs::path(options.dir);
    }
    std::string pattern = (fs::temp_directory_path() / "choreo-bench-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) return std::nullopt;
    return fs::path(pattern);
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows up as it happens, even in a pipe
    const std::optional<Options> options = parse_options(argc, argv);
    if (!options) {
        std::fprintf(stderr, "usage: %s [--quick] [--steps N] [--repeats R] [--batch B] [--no-send] "
                             "[--only toolkit|raw] [--batch-delay-us N] [--dir PATH]\n", argv[0]);
        return 2;
    }
    const std::optional<fs::path> dir = make_dir(*options);
    if (!dir) {
        std::fprintf(stderr, "cannot create the directory for the database files\n");
        return 2;
    }
    std::printf("sqlite_group_commit: files in %s, SQLite %s\n", dir->c_str(), sqlite3_libversion());
    std::vector<Row> rows;
    bool ok = true;
    for (const Case& shape : cases_of(*options)) ok &= measure_case(shape, *options, *dir, rows.emplace_back());
    print_table(rows, *options);
    if (options->dir.empty()) {
        std::error_code ignored;
        fs::remove_all(*dir, ignored);
    }
    if (!ok) std::printf("FAILED: a side did not apply every step exactly once\n");
    return ok ? 0 : 1;
}
