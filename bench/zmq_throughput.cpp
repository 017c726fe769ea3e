// zmq_throughput — messages per second through the toolkit over ZeroMQ, next to raw baselines
// measured in the same run (issue 7, item 8).
//
// The workload is N "deposit" envelopes (bench_common.h), each about 130 bytes.
//
//   raw zmq       cppzmq PUSH → PULL over tcp on loopback, the same N envelope bytes, one message
//                 each; a thread pushes, the timed side pulls until it has N.
//   raw sqlite    the raw SQLite group-commit loop of sqlite_group_commit (batch 256, FULL sync):
//                 per message a dedup lookup, a dedup row and a state row.
//   toolkit       a sending ZmqTransport (its own thread: offers all N, under backpressure, and
//                 drains confirmations) → a Service on a ZmqTransport whose handler saves one
//                 state value per message, on a MemoryStore or a SqliteStore (FULL sync, batch
//                 256): receive → decode → dedup read → handler → commit → ack. Timed until the
//                 last input is resolved (after its batch committed).
//
// Targets (issue 7): toolkit on the memory store >= 60% of raw zmq; toolkit on SQLite >= 60% of
// raw sqlite. The program fails (exit 1) only when a side did not apply every message once,
// never on timing.
//
//   ./zmq_throughput                  # 200,000 messages, 3 repeats of each side
//   ./zmq_throughput --quick          # a small N, one run each: the ctest smoke test
//   ./zmq_throughput --messages 500000 --repeats 5 --only toolkit-memory   # for a profiler
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <zmq.hpp>

#include "bench_common.h"
#include "choreo/durability/memory_store.h"
#include "choreo/durability/sqlite_store.h"
#include "choreo/transport/zmq_transport.h"

namespace {

using namespace choreo_bench;
namespace zt = choreo::zmq_transport;

constexpr std::size_t batch_size = 256;
constexpr std::size_t messages_max = 10'000'000;
constexpr std::size_t repeats_max = 100;
constexpr auto run_timeout = std::chrono::minutes(5);

struct Options {
    bool quick = false;
    std::size_t messages = 200'000;
    std::size_t repeats = 3;
    std::string only{};  // empty: every side; else raw-zmq, raw-sqlite, toolkit-memory, toolkit-sqlite
    std::string dir{};
    std::int64_t batch_delay_us = -1;  // -1: ServiceOptions' default
};

std::optional<Options> parse_options(int argc, char** argv) {
    Options options;
    for (int index = 1; index < argc; index++) {
        const std::string flag = argv[index];
        if (flag == "--quick") {
            options.quick = true;
            options.messages = 5'000;
            options.repeats = 1;
            continue;
        }
        if (index + 1 >= argc) return std::nullopt;
        const std::string value = argv[++index];
        if (flag == "--messages") {
            options.messages = std::strtoull(value.c_str(), nullptr, 10);
        } else if (flag == "--repeats") {
            options.repeats = std::strtoull(value.c_str(), nullptr, 10);
        } else if (flag == "--only") {
            options.only = value;
        } else if (flag == "--dir") {
            options.dir = value;
        } else if (flag == "--batch-delay-us") {
            options.batch_delay_us = std::strtoll(value.c_str(), nullptr, 10);
        } else {
            return std::nullopt;
        }
    }
    if (options.messages == 0 || options.messages > messages_max) return std::nullopt;
    if (options.repeats == 0 || options.repeats > repeats_max) return std::nullopt;
    return options;
}

// ---- raw ZeroMQ ------------------------------------------------------------------------------

Measurement run_raw_zmq(const Workload& workload) {
    zmq::context_t context{1};
    zmq::socket_t pull{context, zmq::socket_type::pull};
    pull.set(zmq::sockopt::linger, 0);
    pull.bind("tcp://127.0.0.1:*");
    const std::string endpoint = pull.get(zmq::sockopt::last_endpoint);
    const Clock::time_point start = Clock::now();
    const double cpu_start = thread_cpu_seconds();
    std::thread pusher{[&] {
        zmq::socket_t push{context, zmq::socket_type::push};
        push.set(zmq::sockopt::linger, -1);  // deliver everything before close
        push.connect(endpoint);
        for (const choreo::Bytes& bytes : workload.envelopes) push.send(zmq::buffer(bytes), zmq::send_flags::none);
    }};
    std::size_t received = 0;
    std::size_t bytes_received = 0;
    zmq::message_t message;
    while (received < workload.envelopes.size()) {
        if (!pull.recv(message, zmq::recv_flags::none)) break;
        bytes_received += message.size();
        received++;
    }
    Measurement measurement;
    measurement.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    measurement.cpu_seconds = thread_cpu_seconds() - cpu_start;
    pusher.join();
    std::size_t bytes_sent = 0;
    for (const choreo::Bytes& bytes : workload.envelopes) bytes_sent += bytes.size();
    if (received != workload.envelopes.size() || bytes_received != bytes_sent) {
        measurement.error = "received " + std::to_string(received) + " messages, " + std::to_string(bytes_received) +
                            " bytes";
    }
    return measurement;
}

// ---- the toolkit -----------------------------------------------------------------------------

std::unique_ptr<zt::ZmqTransport> open_endpoint(const choreo::Address& self, std::shared_ptr<zt::Directory> directory) {
    choreo::Result<std::unique_ptr<zt::ZmqTransport>> opened =
        zt::ZmqTransport::open({.self = self, .directory = std::move(directory), .bind = "tcp://127.0.0.1:*"});
    CHOREO_ASSERT(opened.ok());
    return std::move(opened).value();
}

// The teller: offers all N envelopes to the bank, as fast as backpressure lets it, and drains
// confirmations, until every message is confirmed or `stop` is set.
void send_all(zt::ZmqTransport& teller, const Workload& workload, const std::atomic<bool>& stop) {
    std::vector<choreo::OutgoingMessage> messages;
    messages.reserve(workload.envelopes.size());
    for (std::size_t index = 0; index < workload.envelopes.size(); index++) {
        messages.push_back({workload.ids[index], bank_address(), {}, {}, workload.envelopes[index]});
    }
    std::size_t offered = 0;
    std::size_t confirmed = 0;
    choreo::ReceiveBatch batch;
    while (!stop.load() && confirmed < messages.size()) {
        bool held_back = offered == messages.size();
        if (offered < messages.size()) {
            const std::size_t chunk = std::min<std::size_t>(4096, messages.size() - offered);
            choreo::Result<std::size_t> accepted = teller.send(std::span(messages).subspan(offered, chunk));
            if (!accepted.ok()) return;
            offered += *accepted;
            held_back = *accepted < chunk;
        }
        batch.clear();
        // Under backpressure (or with everything offered) wait for confirmations, as the runtime does.
        if (!teller.receive(batch, 0, held_back ? 1'000 : 0).ok()) return;
        confirmed += batch.confirmed.size();
    }
}

std::int64_t batch_delay_us = -1;  // --batch-delay-us

Measurement run_toolkit(const Workload& workload, choreo::Store& store) {
    auto directory = std::make_shared<zt::Directory>();
    std::unique_ptr<zt::ZmqTransport> bank = open_endpoint(bank_address(), directory);
    std::unique_ptr<zt::ZmqTransport> teller = open_endpoint(teller_address(), directory);
    choreo::ServiceOptions options;
    options.name = "bank";
    options.batch_size_max = batch_size;
    options.step_workers_max = 0;
    if (batch_delay_us >= 0) options.batch_delay_us_max = batch_delay_us;
    choreo::Service service{options, *bank, store};
    service.on("deposit", [](choreo::Context& ctx, const Deposit& deposit) { ctx.save(deposit.account, deposit); });
    std::atomic<bool> stop{false};
    std::thread sender{[&] {
        pthread_setname_np(pthread_self(), "teller");  // for profilers
        send_all(*teller, workload, stop);
    }};
    Measurement measurement = run_service(service, workload.ids.size(), run_timeout);
    stop = true;
    sender.join();
    return measurement;
}

Measurement run_toolkit_memory(const Workload& workload) {
    choreo::MemoryStore store;
    return run_toolkit(workload, store);
}

Measurement run_toolkit_sqlite(const Workload& workload, const fs::path& file) {
    Measurement measurement;
    {
        choreo::Result<std::unique_ptr<choreo::SqliteStore>> store = open_fresh_store(file);
        if (!store.ok()) return {.error = store.status().to_string()};
        measurement = run_toolkit(workload, **store);
    }
    measurement.dedup_rows = count_rows(file, "dedup");
    measurement.state_rows = count_rows(file, "state");
    if (measurement.error.empty() && (measurement.dedup_rows != static_cast<std::int64_t>(workload.ids.size()) ||
                                      measurement.state_rows != static_cast<std::int64_t>(workload.ids.size()))) {
        measurement.error = "dedup rows " + std::to_string(measurement.dedup_rows) + ", state rows " +
                            std::to_string(measurement.state_rows);
    }
    remove_database(file);
    return measurement;
}

Measurement run_raw_sqlite(const Workload& workload, const fs::path& file) {
    Measurement measurement = run_raw(workload, Case{batch_size, false}, file);
    if (measurement.error.empty() && measurement.dedup_rows != static_cast<std::int64_t>(workload.ids.size())) {
        measurement.error = "dedup rows " + std::to_string(measurement.dedup_rows);
    }
    remove_database(file);
    return measurement;
}

// ---- the report ------------------------------------------------------------------------------

struct Side {
    std::string name;
    std::function<Measurement()> run;
    std::vector<double> per_second{};
    std::vector<double> cpu_us{};
    double median_per_second() const { return median(per_second); }
};

void print_ratio(const char* label, const Side& toolkit, const Side& raw, double target_percent) {
    if (toolkit.per_second.empty() || raw.per_second.empty()) return;
    const double percent = 100 * toolkit.median_per_second() / raw.median_per_second();
    std::printf("%-44s %6.1f%%  (target >= %.0f%%: %s)\n", label, percent, target_percent,
                percent >= target_percent ? "met" : "NOT met");
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const std::optional<Options> options = parse_options(argc, argv);
    if (!options) {
        std::fprintf(stderr, "usage: %s [--quick] [--messages N] [--repeats R] "
                             "[--only raw-zmq|raw-sqlite|toolkit-memory|toolkit-sqlite] [--dir PATH]\n", argv[0]);
        return 2;
    }
    const std::optional<fs::path> dir = make_dir(options->dir);
    if (!dir) return 2;
    batch_delay_us = options->batch_delay_us;
    const Workload workload = make_workload(options->messages, false);
    const std::size_t n = workload.ids.size();
    std::printf("zmq_throughput: %zu messages of %zu bytes, ZeroMQ %d.%d.%d, SQLite %s, files in %s\n", n,
                workload.envelopes.front().size(), ZMQ_VERSION_MAJOR, ZMQ_VERSION_MINOR, ZMQ_VERSION_PATCH,
                sqlite3_libversion(), dir->c_str());
    std::vector<Side> sides = {
        {"raw-zmq", [&] { return run_raw_zmq(workload); }},
        {"toolkit-memory", [&] { return run_toolkit_memory(workload); }},
        {"raw-sqlite", [&] { return run_raw_sqlite(workload, *dir / "raw.db"); }},
        {"toolkit-sqlite", [&] { return run_toolkit_sqlite(workload, *dir / "toolkit.db"); }},
    };
    bool ok = true;
    for (std::size_t repeat = 0; repeat < options->repeats; repeat++) {
        for (Side& side : sides) {
            if (!options->only.empty() && options->only != side.name) continue;
            const Measurement measurement = side.run();
            if (!measurement.error.empty()) {
                std::printf("  %-15s FAILED: %s\n", side.name.c_str(), measurement.error.c_str());
                ok = false;
                continue;
            }
            side.per_second.push_back(measurement.steps_per_second(n));
            side.cpu_us.push_back(measurement.cpu_us_per_step(n));
            std::printf("  %-15s %9.0f msg/s  cpu %5.2f us/msg (timed thread)\n", side.name.c_str(),
                        side.per_second.back(), side.cpu_us.back());
        }
    }
    std::printf("\nmedian of %zu run%s, %zu messages:\n", options->repeats, options->repeats == 1 ? "" : "s", n);
    for (const Side& side : sides) {
        if (!side.per_second.empty()) std::printf("  %-15s %9.0f msg/s\n", side.name.c_str(), side.median_per_second());
    }
    print_ratio("toolkit over zmq, memory store / raw zmq:", sides[1], sides[0], 60);
    print_ratio("toolkit over zmq, SQLite FULL / raw SQLite loop:", sides[3], sides[2], 60);
    if (options->dir.empty()) {
        std::error_code ignored;
        fs::remove_all(*dir, ignored);
    }
    if (!ok) std::printf("FAILED: a side did not deliver or apply every message once\n");
    return ok ? 0 : 1;
}
