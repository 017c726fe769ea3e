// zmq_kill_test.cpp — issue 7, item 6: three services in separate processes (zmq_kill_node:
// source → relay → sink over ZeroMQ on loopback, SQLite each) exchange --items messages per hop
// while the relay is killed with SIGKILL and restarted 10 times. Then every item must have been
// applied exactly once by the relay and by the sink, every outbox row settled, no dead letter.
//
// The source starts first, before anybody it sends to has bound (a sender that starts before its
// receiver). Each kill lands 100–1500 ms after the relay reported its store open.
//
// Reproduce: CHOREO_KILL_SEED=<seed> [CHOREO_ZMQ_KILL_ITEMS=<items>] ./zmq_kill_test
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "support/child_process.h"
#include "support/free_port.h"
#include "support/temp_dir.h"

namespace choreo {
namespace {

using testing_support::ms_since;
using testing_support::TempDir;
using Clock = std::chrono::steady_clock;

constexpr int kills_wanted = 10;
constexpr double start_patience_ms = 60'000;
constexpr double finish_patience_ms = 600'000;

std::optional<std::uint64_t> env_number(const char* name) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') return std::nullopt;
    return std::strtoull(value, nullptr, 10);
}

class Node : public testing_support::ChildProcess {
public:
    Node(const std::string& role, const std::string& dir, const std::string& directory, std::int64_t items,
         const std::string& log_prefix)
        : ChildProcess(CHOREO_ZMQ_KILL_NODE,
                       {"--role", role, "--dir", dir, "--directory", directory, "--items", std::to_string(items)},
                       log_prefix) {}
    bool said(std::string_view word) const { return out().find(word) != std::string::npos; }
};

TEST(ZmqKill, ThreeProcessesEveryMessageAppliedOnceAcrossTenSigkillsOfTheRelay) {
    const auto test_start = Clock::now();
    TempDir temp{"choreo-zmq-kill"};
    const std::string dir = temp.path().string();
    const std::uint64_t seed = env_number("CHOREO_KILL_SEED").value_or(std::random_device{}());
    const auto items = static_cast<std::int64_t>(env_number("CHOREO_ZMQ_KILL_ITEMS").value_or(CHOREO_ZMQ_KILL_ITEMS));
    std::mt19937_64 random{seed};
    std::printf("zmq_kill: seed %llu, %lld items (rerun with CHOREO_KILL_SEED=%llu)\n",
                static_cast<unsigned long long>(seed), static_cast<long long>(items),
                static_cast<unsigned long long>(seed));

    const std::string directory = temp.file("directory.conf");
    std::ofstream{directory} << "source/1 " << testing_support::free_tcp_endpoint() << "\n"
                             << "relay/1 " << testing_support::free_tcp_endpoint() << "\n"
                             << "sink/1 " << testing_support::free_tcp_endpoint() << "\n";
    auto log = [&](const std::string& name) { return temp.file(name); };

    Node source{"source", dir, directory, items, log("source")};  // before its receivers bind
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    Node sink{"sink", dir, directory, items, log("sink")};
    std::unique_ptr<Node> relay;
    int under_load = 0;
    int idle = 0;
    for (int life = 0; life <= kills_wanted; life++) {
        relay = std::make_unique<Node>("relay", dir, directory, items, log("relay-" + std::to_string(life)));
        if (life == kills_wanted) break;  // the last life runs to the end
        while (!relay->said("start")) {
            ASSERT_FALSE(relay->exited()) << relay->describe();
            ASSERT_LT(relay->age_ms(), start_patience_ms) << relay->describe();
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        const int delay_ms = std::uniform_int_distribution<int>{100, 1500}(random);
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
        const bool was_complete = relay->said("complete");
        ASSERT_TRUE(relay->kill()) << "the relay ended on its own\n" << relay->describe();
        ASSERT_EQ(relay->err(), "") << relay->describe();
        (was_complete ? idle : under_load)++;
        const std::string out = relay->out();
        std::printf("zmq_kill: kill %2d after %4d ms, %s: %s", life + 1, delay_ms, was_complete ? "idle" : "under load",
                    out.substr(0, out.find('\n') + 1).c_str());
        ASSERT_FALSE(source.exited()) << source.describe();
        ASSERT_FALSE(sink.exited()) << sink.describe();
    }

    const auto finish_start = Clock::now();
    for (Node* node : {&source, relay.get(), &sink}) {
        while (!node->said("complete")) {
            ASSERT_FALSE(node->exited()) << node->describe();
            ASSERT_LT(ms_since(finish_start), finish_patience_ms)
                << "no completion (a lost message?) seed " << seed << "\nsource: " << source.describe()
                << "\nrelay: " << relay->describe() << "\nsink: " << sink.describe();
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
    const double work_ms = ms_since(test_start);
    for (Node* node : {&source, relay.get(), &sink}) node->terminate();
    for (Node* node : {&source, relay.get(), &sink}) {
        ASSERT_TRUE(node->wait(node->age_ms() + 30'000)) << node->describe();
        EXPECT_EQ(node->exit_code(), 0) << node->describe();
    }

    testing_support::ChildProcess verify{CHOREO_ZMQ_KILL_NODE,
                                         {"--role", "verify", "--dir", dir, "--items", std::to_string(items)},
                                         log("verify")};
    ASSERT_TRUE(verify.wait(120'000)) << verify.describe();
    EXPECT_EQ(verify.exit_code(), 0) << "seed " << seed << "\n" << verify.describe();
    std::printf("zmq_kill: seed %llu, %lld items per hop (%lld messages), kills %d (under load %d, idle %d), "
                "done in %.1f s; %s",
                static_cast<unsigned long long>(seed), static_cast<long long>(items),
                static_cast<long long>(2 * items + items / 100), under_load + idle, under_load, idle,
                work_ms / 1000, verify.out().c_str());
    RecordProperty("seed", std::to_string(seed));
    RecordProperty("kills_under_load", under_load);
    EXPECT_EQ(under_load + idle, kills_wanted);
}

}  // namespace
}  // namespace choreo
