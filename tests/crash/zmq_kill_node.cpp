// zmq_kill_node.cpp — one of the three processes of zmq_kill_test (issue 7, item 6): three
// services in separate processes, over real ZeroMQ sockets on loopback, each on its own SQLite
// file, while the test kills the middle one with SIGKILL again and again.
//
//   source ──item i (×B per step, anycast "relay")──▶ relay ──record i──▶ sink
//     └─produce k+1─┘ (to itself)
//
// "source" handles "produce k": B items to the relay service and "produce k+1" to itself, in one
// step, until --items items exist. "relay" handles "item i": counts it (applied/<i> = old + 1,
// so a second apply shows as 2) and sends "record i" to the sink. "sink" counts "record i" the
// same way and adds its amount to a total. The chain starts with one "produce 0" of a fixed id,
// sent again by every start of the source: the dedup table drops all but the first.
//
//   zmq_kill_node --role source|relay|sink --dir D --directory FILE --items N
//       runs the role until SIGTERM. Prints "start ..." once its store opened and passed
//       integrity_check, "complete ..." once its part is done (all applied and its outbox settled).
//   zmq_kill_node --role verify --dir D --items N
//       checks the three stores once the processes are gone: every item applied exactly once by
//       the relay and the sink, every outbox row settled, no dead letter, the total right.
//
// Exit status: 0 ok; 2 usage; 3 verify found a violation; 4 a store cannot open or fails
// integrity_check; 5 a service stopped with an error; 6 the parent (the test) is gone.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "choreo/codec.h"
#include "choreo/durability/sqlite_store.h"
#include "choreo/service.h"
#include "choreo/transport/zmq_transport.h"

namespace {

using choreo::Address;
using choreo::Bytes;
using choreo::MessageId;
using choreo::SqliteStore;
namespace zmq_transport = choreo::zmq_transport;

constexpr std::int64_t items_per_step = 100;  // B

struct Produce {
    std::int64_t step = 0;
    MSGPACK_DEFINE_MAP(step);
};
struct Item {
    std::int64_t index = 0;
    std::int64_t amount = 0;
    MSGPACK_DEFINE_MAP(index, amount);
};

std::int64_t amount_of(std::int64_t index) { return index % 89 + 1; }
std::int64_t steps_for(std::int64_t items) { return (items + items_per_step - 1) / items_per_step; }
std::string key(std::string_view prefix, std::int64_t index) { return std::string(prefix) + std::to_string(index); }
MessageId seed_id() { return choreo::derive_id(MessageId{0x7a6d716b'696c6c00ULL, 0x0000'0000'0000'0001ULL}, 0); }

volatile std::sig_atomic_t terminate_requested = 0;
void on_terminate(int) { terminate_requested = 1; }

struct Options {
    std::string role;
    std::string dir;
    std::string directory;
    std::int64_t items = 0;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr, "zmq_kill_node: %s\nusage: zmq_kill_node --role source|relay|sink|verify --dir D "
                         "[--directory FILE] --items N\n", why);
    std::exit(2);
}

Options parse(int argc, char** argv) {
    Options options;
    for (int index = 1; index < argc; index++) {
        const std::string arg = argv[index];
        if (index + 1 >= argc) usage(("missing value after " + arg).c_str());
        const std::string value = argv[++index];
        if (arg == "--role") {
            options.role = value;
        } else if (arg == "--dir") {
            options.dir = value;
        } else if (arg == "--directory") {
            options.directory = value;
        } else if (arg == "--items") {
            options.items = std::atoll(value.c_str());
        } else {
            usage(("unknown argument " + arg).c_str());
        }
    }
    const bool known_role = options.role == "source" || options.role == "relay" || options.role == "sink" ||
                            options.role == "verify";
    if (!known_role) usage("bad --role");
    if (options.dir.empty()) usage("--dir is required");
    if (options.role != "verify" && options.directory.empty()) usage("--directory is required");
    if (options.items <= 0 || options.items > 10'000'000) usage("--items must be in 1..10000000");
    return options;
}

std::unique_ptr<SqliteStore> open_store(const std::string& path) {
    choreo::Result<std::unique_ptr<SqliteStore>> opened = SqliteStore::open({.path = path});
    if (!opened.ok()) {
        std::fprintf(stderr, "zmq_kill_node: cannot open %s: %s\n", path.c_str(), opened.status().to_string().c_str());
        std::exit(4);
    }
    choreo::Result<std::string> integrity = (*opened)->integrity_check();
    if (!integrity.ok() || *integrity != "ok") {
        std::fprintf(stderr, "zmq_kill_node: integrity_check of %s failed\n", path.c_str());
        std::exit(4);
    }
    return std::move(opened).value();
}

std::int64_t count_of(SqliteStore& store, const std::string& state_key, std::vector<std::string>& problems) {
    choreo::Result<std::optional<Bytes>> stored = store.load_state(state_key);
    if (!stored.ok() || !stored->has_value()) {
        if (!stored.ok()) problems.push_back(state_key + ": " + stored.status().to_string());
        return 0;
    }
    choreo::Result<std::int64_t> value = choreo::unpack<std::int64_t>(**stored);
    if (!value.ok()) problems.push_back(state_key + ": " + value.status().to_string());
    return value.ok() ? *value : 0;
}

std::size_t unsettled_of(SqliteStore& store, std::size_t limit, std::vector<std::string>& problems) {
    choreo::Result<std::vector<choreo::OutboxRow>> rows = store.unsettled_outbox(MessageId{}, limit);
    if (!rows.ok()) problems.push_back("unsettled_outbox: " + rows.status().to_string());
    return rows.ok() ? rows->size() : 0;
}

// ---- the three roles -------------------------------------------------------------------------

void add_handlers(choreo::Service& service, const std::string& role, std::int64_t items) {
    if (role == "source") {
        service.on("produce", [items](choreo::Context& ctx, const Produce& produce) {
            const std::string produced = key("produced/", produce.step);
            ctx.save(produced, ctx.load<std::int64_t>(produced).value_or(0) + 1);
            ctx.save("progress", ctx.load<std::int64_t>("progress").value_or(0) + 1);
            const std::int64_t first = produce.step * items_per_step;
            for (std::int64_t index = first; index < std::min(items, first + items_per_step); index++) {
                ctx.send("relay", "item", Item{index, amount_of(index)});
            }
            if (produce.step + 1 < steps_for(items)) ctx.send(ctx.self(), "produce", Produce{produce.step + 1});
        });
    } else if (role == "relay") {
        service.on("item", [](choreo::Context& ctx, const Item& item) {
            const std::string applied = key("applied/", item.index);
            ctx.save(applied, ctx.load<std::int64_t>(applied).value_or(0) + 1);
            ctx.save("progress", ctx.load<std::int64_t>("progress").value_or(0) + 1);
            ctx.send("sink", "record", item);
        });
    } else {
        service.on("record", [](choreo::Context& ctx, const Item& item) {
            const std::string applied = key("applied/", item.index);
            ctx.save(applied, ctx.load<std::int64_t>(applied).value_or(0) + 1);
            ctx.save("progress", ctx.load<std::int64_t>("progress").value_or(0) + 1);
            ctx.save("total", ctx.load<std::int64_t>("total").value_or(0) + item.amount);
        });
    }
}

// What "done" means for a role: all its inputs applied (source: all steps) and its outbox settled.
std::int64_t progress_wanted(const std::string& role, std::int64_t items) {
    return role == "source" ? steps_for(items) : items;
}

// Sends "produce 0" with its fixed id, before the service runs (the transport has one user then).
void send_seed(zmq_transport::ZmqTransport& transport) {
    choreo::Envelope seed;
    seed.id = seed_id();
    seed.kind = "produce";
    seed.to = transport.local_address();
    seed.correlation = "zmq-kill-chain";
    seed.sent_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
    seed.body = choreo::pack(Produce{0});
    const Bytes bytes = choreo::encode_envelope(seed, choreo::MessageLimits{}).value();
    const choreo::OutgoingMessage message{seed.id, seed.to, "", seed.correlation, bytes};
    choreo::Result<std::size_t> accepted = transport.send({&message, 1});
    if (!accepted.ok() || *accepted != 1) {
        std::fprintf(stderr, "zmq_kill_node: the seed was not accepted\n");
        std::exit(5);
    }
}

int run(const Options& options) {
    std::unique_ptr<SqliteStore> store = open_store(options.dir + "/" + options.role + ".db");
    std::vector<std::string> problems;
    std::printf("start %s progress=%lld\n", options.role.c_str(),
                static_cast<long long>(count_of(*store, "progress", problems)));
    std::fflush(stdout);

    auto directory = zmq_transport::Directory::load(options.directory);
    if (!directory.ok()) {
        std::fprintf(stderr, "zmq_kill_node: %s\n", directory.status().to_string().c_str());
        return 2;
    }
    const Address self = Address::unicast(options.role, "1");
    auto transport = zmq_transport::ZmqTransport::open({.self = self, .directory = *directory});
    if (!transport.ok()) {
        std::fprintf(stderr, "zmq_kill_node: %s\n", transport.status().to_string().c_str());
        return 5;
    }
    choreo::ServiceOptions service_options{.name = options.role, .instance = "1"};
    service_options.kernel.send_retry_delay_ms_max = 1000;  // a restarted peer is found again soon
    choreo::Service service{service_options, **transport, *store};
    add_handlers(service, options.role, options.items);
    if (options.role == "source") send_seed(**transport);

    std::atomic<bool> failed{false};
    std::thread runner{[&] {
        choreo::Status end = service.run();
        if (!end.ok()) {
            std::fprintf(stderr, "zmq_kill_node: %s stopped: %s\n", options.role.c_str(), end.to_string().c_str());
            failed = true;
        }
    }};
    const pid_t parent = ::getppid();
    bool complete = false;
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
        const std::int64_t progress = count_of(*store, "progress", problems);
        if (!complete && progress == progress_wanted(options.role, options.items) &&
            unsettled_of(*store, 1, problems) == 0) {
            complete = true;
            std::printf("complete %s progress=%lld\n", options.role.c_str(), static_cast<long long>(progress));
            std::fflush(stdout);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    service.stop();
    runner.join();
    (*transport)->close();
    for (const std::string& problem : problems) std::fprintf(stderr, "zmq_kill_node: %s\n", problem.c_str());
    return failed ? 5 : status;
}

// ---- verify ----------------------------------------------------------------------------------

void expect_no_dead_letters(SqliteStore& store, const char* role, std::vector<std::string>& problems) {
    choreo::Result<std::vector<choreo::DeadLetter>> letters = store.dead_letters("", 5);
    if (!letters.ok()) {
        problems.push_back(std::string(role) + ": dead_letters: " + letters.status().to_string());
        return;
    }
    for (const choreo::DeadLetter& letter : *letters) {
        problems.push_back(std::string(role) + ": dead letter " + letter.key + ": " + letter.reason + " " + letter.detail);
    }
}

int verify(const Options& options) {
    std::unique_ptr<SqliteStore> source = open_store(options.dir + "/source.db");
    std::unique_ptr<SqliteStore> relay = open_store(options.dir + "/relay.db");
    std::unique_ptr<SqliteStore> sink = open_store(options.dir + "/sink.db");
    std::vector<std::string> problems;
    auto report = [&](std::string text) {
        if (problems.size() < 40) problems.push_back(std::move(text));
    };
    for (std::int64_t step = 0; step < steps_for(options.items); step++) {
        const std::int64_t count = count_of(*source, key("produced/", step), problems);
        if (count != 1) report("source: produce " + std::to_string(step) + " applied " + std::to_string(count) + " times");
    }
    std::int64_t total = 0;
    std::int64_t relay_applied = 0;
    std::int64_t sink_applied = 0;
    for (std::int64_t index = 0; index < options.items; index++) {
        const std::int64_t at_relay = count_of(*relay, key("applied/", index), problems);
        const std::int64_t at_sink = count_of(*sink, key("applied/", index), problems);
        if (at_relay != 1) report("relay: item " + std::to_string(index) + " applied " + std::to_string(at_relay) + " times");
        if (at_sink != 1) report("sink: item " + std::to_string(index) + " applied " + std::to_string(at_sink) + " times");
        relay_applied += at_relay;
        sink_applied += at_sink;
        total += amount_of(index);
    }
    if (count_of(*sink, "total", problems) != total) report("sink: total " + std::to_string(count_of(*sink, "total", problems)) + ", want " + std::to_string(total));
    if (count_of(*relay, "progress", problems) != options.items) report("relay: progress counter off");
    for (auto [store, role] : {std::pair{source.get(), "source"}, {relay.get(), "relay"}, {sink.get(), "sink"}}) {
        if (const std::size_t left = unsettled_of(*store, 10, problems); left != 0) {
            report(std::string(role) + ": " + std::to_string(left) + " unsettled outbox rows");
        }
        expect_no_dead_letters(*store, role, problems);
    }
    for (const std::string& problem : problems) std::fprintf(stderr, "zmq_kill_node: VIOLATION %s\n", problem.c_str());
    std::printf("%s items=%lld relay_applied=%lld sink_applied=%lld total=%lld\n", problems.empty() ? "verified" : "broken",
                static_cast<long long>(options.items), static_cast<long long>(relay_applied),
                static_cast<long long>(sink_applied), static_cast<long long>(total));
    return problems.empty() ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
    const Options options = parse(argc, argv);
    if (options.role == "verify") return verify(options);
    struct sigaction action{};
    action.sa_handler = on_terminate;
    ::sigaction(SIGTERM, &action, nullptr);
    ::sigaction(SIGINT, &action, nullptr);
    return run(options);
}
