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
#include "bench_common.h"

namespace {

using namespace choreo_bench;

constexpr std::size_t batch_sizes[] = {1, 16, 256};
constexpr std::size_t send_batch_size = 256;  // the batch size of the "+send" row
constexpr std::size_t steps_max = 10'000'000;
constexpr std::size_t repeats_max = 100;
constexpr std::size_t sink_receive_max = 4096;
// A run that stops making progress fails instead of hanging.
constexpr auto run_timeout = std::chrono::minutes(5);
constexpr auto run_timeout_quick = std::chrono::seconds(60);

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

// ---- the toolkit ---------------------------------------------------------------------------

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

Measurement run_toolkit(const Workload& workload, const Case& shape, const Options& options, const fs::path& file) {
    const std::size_t steps = workload.ids.size();
    Measurement measurement;
    {
        choreo::Result<std::unique_ptr<choreo::SqliteStore>> store = open_fresh_store(file);
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

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows up as it happens, even in a pipe
    const std::optional<Options> options = parse_options(argc, argv);
    if (!options) {
        std::fprintf(stderr, "usage: %s [--quick] [--steps N] [--repeats R] [--batch B] [--no-send] "
                             "[--only toolkit|raw] [--batch-delay-us N] [--dir PATH]\n", argv[0]);
        return 2;
    }
    const std::optional<fs::path> dir = make_dir(options->dir);
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
