// kafka_kill_node.cpp — one instance of the service of kafka_kill_test (issue 7, item 7): three
// instances of one service in separate processes, each on its own SQLite file, each consuming a
// static share of the service topic's partitions on a Kafka cluster (the test's MockCluster),
// while the test kills them with SIGKILL again and again.
//
//   test ──"item n" (anycast <service>, key item-<n>)──▶ <prefix>.<service> partition p
//                                                        └──▶ instance (p % count) + 1
//
// The handler applies "item n" as one state write: item/<n> = old + 1 (so a second apply shows
// as 2, and is counted in "duplicates" too), and adds 1 to "progress". Nothing is sent on.
//
//   kafka_kill_node --brokers B --prefix P --service S --db FILE --index I --count C
//       runs instance I+1 of C until SIGTERM. Prints "start ..." once its store opened and
//       passed integrity_check and the transport opened, then "progress <n>" (the store's count
//       of applied items) at once and whenever it changed (looked at every 50 ms), and a
//       "stopped ..." line with the transport's figures after SIGTERM.
//
// Exit status: 0 ok; 2 usage; 4 the store cannot open or fails integrity_check; 5 the transport
// cannot open or the service stopped with an error; 6 the parent (the test) is gone.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "choreo/durability/sqlite_store.h"
#include "choreo/service.h"
#include "choreo/transport/kafka_transport.h"

namespace {

using choreo::Bytes;
using choreo::SqliteStore;
namespace kafka = choreo::kafka_transport;

volatile std::sig_atomic_t terminate_requested = 0;
void on_terminate(int) { terminate_requested = 1; }

struct Options {
    std::string brokers;
    std::string prefix;
    std::string service;
    std::string db;
    std::int32_t index = -1;
    std::int32_t count = 0;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr, "kafka_kill_node: %s\nusage: kafka_kill_node --brokers B --prefix P --service S --db FILE "
                         "--index I --count C\n", why);
    std::exit(2);
}

Options parse(int argc, char** argv) {
    Options options;
    for (int index = 1; index < argc; index++) {
        const std::string arg = argv[index];
        if (index + 1 >= argc) usage(("missing value after " + arg).c_str());
        const std::string value = argv[++index];
        if (arg == "--brokers") {
            options.brokers = value;
        } else if (arg == "--prefix") {
            options.prefix = value;
        } else if (arg == "--service") {
            options.service = value;
        } else if (arg == "--db") {
            options.db = value;
        } else if (arg == "--index") {
            options.index = std::atoi(value.c_str());
        } else if (arg == "--count") {
            options.count = std::atoi(value.c_str());
        } else {
            usage(("unknown argument " + arg).c_str());
        }
    }
    if (options.brokers.empty() || options.prefix.empty() || options.service.empty() || options.db.empty()) {
        usage("--brokers, --prefix, --service and --db are required");
    }
    if (options.count < 1 || options.index < 0 || options.index >= options.count) usage("--index must be in [0, --count)");
    return options;
}

std::unique_ptr<SqliteStore> open_store(const std::string& path) {
    choreo::Result<std::unique_ptr<SqliteStore>> opened = SqliteStore::open({.path = path});
    if (!opened.ok()) {
        std::fprintf(stderr, "kafka_kill_node: cannot open %s: %s\n", path.c_str(), opened.status().to_string().c_str());
        std::exit(4);
    }
    choreo::Result<std::string> integrity = (*opened)->integrity_check();
    if (!integrity.ok() || *integrity != "ok") {
        std::fprintf(stderr, "kafka_kill_node: integrity_check of %s failed\n", path.c_str());
        std::exit(4);
    }
    return std::move(opened).value();
}

// A counter in the store's state; -1 if it cannot be read (reported on stderr).
std::int64_t counter(SqliteStore& store, const std::string& key) {
    choreo::Result<std::optional<Bytes>> stored = store.load_state(key);
    if (!stored.ok()) {
        std::fprintf(stderr, "kafka_kill_node: load_state %s: %s\n", key.c_str(), stored.status().to_string().c_str());
        return -1;
    }
    if (!stored->has_value()) return 0;
    choreo::Result<std::int64_t> value = choreo::unpack<std::int64_t>(**stored);
    return value.ok() ? *value : -1;
}

int run(const Options& options) {
    std::unique_ptr<SqliteStore> store = open_store(options.db);
    const std::string instance = std::to_string(options.index + 1);
    const choreo::Address self = choreo::Address::unicast(options.service, instance);
    kafka::KafkaOptions transport_options{.self = self,
                                          .brokers = options.brokers,
                                          .prefix = options.prefix,
                                          .store = store.get(),
                                          .assignment = kafka::Assignment::static_partitions,
                                          .instance_index = options.index,
                                          .instance_count = options.count};
    auto transport = kafka::KafkaTransport::open(transport_options);
    if (!transport.ok()) {
        std::fprintf(stderr, "kafka_kill_node: %s\n", transport.status().to_string().c_str());
        return 5;
    }
    choreo::Service service{{.name = options.service, .instance = instance}, **transport, *store};
    service.on("item", [](choreo::Context& ctx, const std::int64_t& item) {
        const std::string applied = "item/" + std::to_string(item);
        const std::optional<std::int64_t> before = ctx.load<std::int64_t>(applied);
        if (before) ctx.save("duplicates", ctx.load<std::int64_t>("duplicates").value_or(0) + 1);
        ctx.save(applied, before.value_or(0) + 1);
        ctx.save("progress", ctx.load<std::int64_t>("progress").value_or(0) + 1);
    });
    std::int64_t reported = counter(*store, "progress");
    std::printf("start instance=%s pid=%d\nprogress %lld\n", instance.c_str(), static_cast<int>(::getpid()),
                static_cast<long long>(reported));
    std::fflush(stdout);

    std::atomic<bool> failed{false};
    std::thread runner{[&] {
        choreo::Status end = service.run();
        if (!end.ok()) {
            std::fprintf(stderr, "kafka_kill_node: instance %s stopped: %s\n", instance.c_str(), end.to_string().c_str());
            failed = true;
        }
    }};
    const pid_t parent = ::getppid();
    int status = 0;
    while (terminate_requested == 0) {
        if (failed) {
            status = 5;
            break;
        }
        if (::getppid() != parent) {
            status = 6;
            break;
        }
        const std::int64_t progress = counter(*store, "progress");
        if (progress != reported) {
            reported = progress;
            std::printf("progress %lld\n", static_cast<long long>(progress));
            std::fflush(stdout);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    service.stop();
    runner.join();
    (*transport)->close();
    const kafka::KafkaStats stats = (*transport)->stats();
    std::printf("stopped instance=%s progress=%lld duplicates=%lld consumed=%llu assignments=%llu\n",
                instance.c_str(), static_cast<long long>(counter(*store, "progress")),
                static_cast<long long>(counter(*store, "duplicates")), static_cast<unsigned long long>(stats.consumed),
                static_cast<unsigned long long>(stats.assignments));
    std::fflush(stdout);
    return failed ? 5 : status;
}

}  // namespace

int main(int argc, char** argv) {
    const Options options = parse(argc, argv);
    struct sigaction action{};
    action.sa_handler = on_terminate;
    ::sigaction(SIGTERM, &action, nullptr);
    ::sigaction(SIGINT, &action, nullptr);
    return run(options);
}
