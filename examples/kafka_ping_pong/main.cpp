// kafka_ping_pong — ping and pong in two processes over Kafka, each on its own SQLite file.
//
// Start a development cluster (it prints its bootstrap address; see docs/kafka.md):
//
//   choreo-dev-kafka --service ping --service pong --topic choreo.ping.1 --topic choreo.pong.1
//   bootstrap: 127.0.0.1:39017
//
// then start pong (it serves until Ctrl-C) and run ping (it plays --rounds and exits):
//
//   ./kafka_ping_pong --role pong --brokers 127.0.0.1:39017 --data /tmp/pong &
//   ./kafka_ping_pong --role ping --brokers 127.0.0.1:39017 --data /tmp/ping --rounds 10
//
// Start them in either order: the broker keeps ping's first message until pong reads it. Against
// a real cluster, pass librdkafka settings through with -X, as kcat does:
//
//   ./kafka_ping_pong --role ping --brokers kafka-1.example.net:9093 --prefix staging
//       -X security.protocol=SASL_SSL -X sasl.mechanisms=PLAIN
//       -X sasl.username=choreo -X sasl.password=...       (one command line)
//
// Topics are `<prefix>.ping`, `<prefix>.pong`, `<prefix>.ping.1` and `<prefix>.pong.1`. The
// transport creates missing ones at start, the service topics with --create-partitions N
// partitions (default 1); --create-partitions 0 leaves them to the operator (a cluster whose ACLs
// do not let this user create topics). choreo-dev-kafka's mock brokers do not answer CreateTopics
// requests, so it makes the topics itself, as above.
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

#include "choreo/assert.h"
#include "choreo/service.h"
#include "choreo/transport/kafka_transport.h"
#include "common/example_store.h"

namespace {

namespace kt = choreo::kafka_transport;

struct Ping {
    int round = 0;
    MSGPACK_DEFINE_MAP(round);
};
struct Pong {
    int round = 0;
    MSGPACK_DEFINE_MAP(round);
};

volatile std::sig_atomic_t interrupted = 0;
void on_interrupt(int) { interrupted = 1; }

constexpr int rounds_max = 100'000;
constexpr std::int32_t create_partitions_max = 10'000;
constexpr std::size_t settings_max = 256;  // -X arguments

struct Arguments {
    std::string role;
    std::string brokers;
    std::string prefix = "choreo";
    std::map<std::string, std::string> settings;  // -X key=value, the last one of a key wins
    int rounds = 5;
    std::int32_t create_partitions = 1;  // KafkaOptions::create_topic_partitions
};

[[noreturn]] void exit_usage_error(const std::string& message) {
    std::fprintf(stderr,
                 "kafka_ping_pong: %s\n"
                 "usage: kafka_ping_pong --role ping|pong --brokers HOST:PORT[,HOST:PORT...] [--prefix PREFIX]\n"
                 "                       [-X KEY=VALUE]... [--rounds N] [--create-partitions N] [--data DIR | --memory]\n",
                 message.c_str());
    std::exit(2);
}

void add_setting(Arguments& arguments, std::string_view text) {
    const std::size_t equals = text.find('=');
    if (equals == std::string_view::npos || equals == 0) {
        exit_usage_error("-X " + std::string(text) + ": expected KEY=VALUE (a librdkafka setting)");
    }
    if (arguments.settings.size() >= settings_max) exit_usage_error("too many -X settings");
    arguments.settings[std::string(text.substr(0, equals))] = std::string(text.substr(equals + 1));
}

// A whole decimal number in [low, high]; anything else is a usage error naming the flag.
int parse_bounded(const std::string& flag, std::string_view text, int low, int high) {
    CHOREO_ASSERT(low <= high);
    int value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size() || value < low || value > high) {
        exit_usage_error(flag + " " + std::string(text) + ": must be a number from " + std::to_string(low) + " to " +
                         std::to_string(high));
    }
    return value;
}

// --data DIR and --memory are read by example::DataDirectory; they are only skipped here.
Arguments parse(int argc, char** argv) {
    CHOREO_ASSERT(argc >= 1);
    Arguments arguments;
    for (int index = 1; index < argc; index++) {
        const std::string flag = argv[index];
        if (flag == "--memory") continue;
        if (flag != "--role" && flag != "--brokers" && flag != "--prefix" && flag != "-X" && flag != "--rounds" &&
            flag != "--create-partitions" && flag != "--data") {
            exit_usage_error("unknown argument '" + flag + "'");
        }
        if (index + 1 >= argc) exit_usage_error(flag + " needs a value");
        const std::string value = argv[++index];
        if (flag == "--role") arguments.role = value;
        else if (flag == "--brokers") arguments.brokers = value;
        else if (flag == "--prefix") arguments.prefix = value;
        else if (flag == "-X") add_setting(arguments, value);
        else if (flag == "--rounds") arguments.rounds = parse_bounded(flag, value, 1, rounds_max);
        else if (flag == "--create-partitions") {
            arguments.create_partitions = parse_bounded(flag, value, 0, create_partitions_max);
        }
    }
    if (arguments.role != "ping" && arguments.role != "pong") exit_usage_error("--role must be ping or pong");
    if (arguments.brokers.empty()) exit_usage_error("--brokers is required");
    return arguments;
}

std::unique_ptr<kt::KafkaTransport> open_transport(const Arguments& arguments, choreo::Store& store) {
    kt::KafkaOptions options{.self = choreo::Address::unicast(arguments.role, "1"),
                             .brokers = arguments.brokers,
                             .prefix = arguments.prefix,
                             .store = &store,  // exactly once: consumed offsets commit with the effects
                             .create_topic_partitions = arguments.create_partitions,
                             .settings = arguments.settings};
    auto opened = kt::KafkaTransport::open(std::move(options));
    if (!opened.ok()) {  // null: main returns, so a temporary data directory is removed
        std::fprintf(stderr, "kafka_ping_pong: open: %s\n", opened.status().to_string().c_str());
        return nullptr;
    }
    CHOREO_ASSERT(*opened != nullptr);
    return std::move(opened).value();
}

void print_stats(const std::string& role, const choreo::Service& service, const kt::KafkaTransport& transport) {
    const choreo::ServiceStats stats = service.stats();
    const kt::KafkaStats kafka = transport.stats();
    std::printf("kafka_ping_pong: %s applied %llu, duplicates %llu, sends %llu, confirmed %llu; "
                "kafka produced %llu, confirmed %llu, consumed %llu\n",
                role.c_str(), static_cast<unsigned long long>(stats.applied),
                static_cast<unsigned long long>(stats.duplicates), static_cast<unsigned long long>(stats.sends),
                static_cast<unsigned long long>(stats.confirmed), static_cast<unsigned long long>(kafka.produced),
                static_cast<unsigned long long>(kafka.confirmed), static_cast<unsigned long long>(kafka.consumed));
}

}  // namespace

int main(int argc, char** argv) {
    const Arguments arguments = parse(argc, argv);
    std::signal(SIGINT, on_interrupt);
    std::signal(SIGTERM, on_interrupt);
    const example::DataDirectory data{argc, argv};
    std::unique_ptr<choreo::Store> store = data.open(arguments.role + "-1");
    std::unique_ptr<kt::KafkaTransport> transport = open_transport(arguments, *store);
    if (transport == nullptr) return 2;
    choreo::Service service{{.name = arguments.role}, *transport, *store};
    std::atomic<int> last_round{0};
    const int rounds = arguments.rounds;
    service.on("ping", [](choreo::Context& ctx, const Ping& ping) {
        ctx.save("served", ctx.load<int>("served").value_or(0) + 1);
        std::printf("pong: ping %d from %s\n", ping.round, ctx.message().from.to_string().c_str());
        ctx.reply("pong", Pong{ping.round});
    });
    service.on("pong", [&](choreo::Context& ctx, const Pong& pong) {
        std::printf("ping: pong %d\n", pong.round);
        if (pong.round < rounds) ctx.send("pong", "ping", Ping{pong.round + 1});
        last_round = pong.round;
    });
    std::printf("kafka_ping_pong: %s on %s (topics %s, %s), %s\n", arguments.role.c_str(), arguments.brokers.c_str(),
                kt::service_topic(arguments.prefix, arguments.role).c_str(),
                kt::instance_topic(arguments.prefix, transport->local_address()).c_str(), data.describe().c_str());
    std::fflush(stdout);
    std::thread runner{[&] { service.run().ignore(); }};
    if (arguments.role == "ping") {
        const choreo::Status posted = service.post("pong", "ping", Ping{1});
        if (!posted.ok()) {
            std::fprintf(stderr, "kafka_ping_pong: post: %s\n", posted.to_string().c_str());
            interrupted = 1;
        }
    }
    while (interrupted == 0 && !(arguments.role == "ping" && last_round.load() == rounds)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    service.stop();
    runner.join();
    print_stats(arguments.role, service, *transport);
    return arguments.role == "ping" && last_round.load() != rounds ? 1 : 0;
}
