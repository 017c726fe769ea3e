// kafka_kill_test.cpp — issue 7, item 7: scale-out under crashes. One service runs as three
// instances in separate processes (kafka_kill_node), each on its own SQLite file, each owning a
// static share of the 12 partitions of the service topic (instance_index 0..2 of 3: 4 partitions
// each) on a 3-broker MockCluster hosted in this process (never killed). This process sends --items
// "item n" messages (encoded envelopes, unique ids, key item-<n>) through a KafkaTransport to the
// service's anycast address, so the transport's partitioner spreads them. Sends are spread over
// at least 12 s and kept a bounded window ahead of what the instances applied, so items flow all
// along; meanwhile a random instance is killed with SIGKILL 100–1500 ms after it (re)started and
// restarted on the same file, 10 times. A kill counts as under load when the victim had not yet
// applied all of its share.
//
// At the end (every item applied, stable for a second) the instances are stopped with SIGTERM
// and their stores read: every item 0..N-1 must have been applied exactly once across the three
// stores, in the store of the instance that owns the item's partition (Kafka's murmur2 of the
// key, as the producer computes it), with no duplicate and no dead letter; each store holds
// consumed positions of its own partitions only, each at the partition's end.
//
// Reproduce: CHOREO_KILL_SEED=<seed> [CHOREO_KAFKA_KILL_ITEMS=<items>] ./kafka_kill_test
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "choreo/codec.h"
#include "choreo/context.h"
#include "choreo/durability/sqlite_store.h"
#include "choreo/system.h"
#include "choreo/transport/kafka_mock.h"
#include "choreo/transport/kafka_transport.h"
#include "support/child_process.h"
#include "support/temp_dir.h"

namespace choreo {
namespace {

using kafka_transport::instance_topic;
using kafka_transport::KafkaTransport;
using kafka_transport::MockCluster;
using kafka_transport::service_topic;
using testing_support::ms_since;
using testing_support::TempDir;
using Clock = std::chrono::steady_clock;

constexpr int kills_wanted = 10;
// Sends are spread over at least this long (and kept a window ahead of what was applied), so the
// kills (each 100–1500 ms after its victim started) land while items are still flowing.
constexpr double production_ms = 12'000;
constexpr std::int32_t partition_count = 12;
constexpr std::int32_t instance_count = 3;
constexpr double start_patience_ms = 60'000;
constexpr double finish_patience_ms = 300'000;
constexpr double resend_after_ms = 15'000;  // a send not confirmed by then is sent again (same id)
const std::string prefix = "kill";
const std::string service = "ledger";

std::optional<std::uint64_t> env_number(const char* name) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') return std::nullopt;
    return std::strtoull(value, nullptr, 10);
}

std::string item_key(std::int64_t item) { return "item-" + std::to_string(item); }

// Kafka's murmur2 (the Java client's, and librdkafka's "murmur2_random" partitioner for keyed
// records): where the transport's producer puts a key, so the test knows which instance owns it.
std::uint32_t murmur2(std::string_view key) {
    constexpr std::uint32_t m = 0x5bd1e995;
    const auto* data = reinterpret_cast<const unsigned char*>(key.data());
    const std::size_t length = key.size();
    std::uint32_t hash = 0x9747b28c ^ static_cast<std::uint32_t>(length);
    std::size_t at = 0;
    for (; at + 4 <= length; at += 4) {
        std::uint32_t k = static_cast<std::uint32_t>(data[at]) | static_cast<std::uint32_t>(data[at + 1]) << 8 |
                          static_cast<std::uint32_t>(data[at + 2]) << 16 | static_cast<std::uint32_t>(data[at + 3]) << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        hash *= m;
        hash ^= k;
    }
    switch (length - at) {
        case 3: hash ^= static_cast<std::uint32_t>(data[at + 2]) << 16; [[fallthrough]];
        case 2: hash ^= static_cast<std::uint32_t>(data[at + 1]) << 8; [[fallthrough]];
        case 1:
            hash ^= static_cast<std::uint32_t>(data[at]);
            hash *= m;
            break;
        default: break;
    }
    hash ^= hash >> 13;
    hash *= m;
    hash ^= hash >> 15;
    return hash;
}

std::int32_t partition_of(std::int64_t item) {
    return static_cast<std::int32_t>((murmur2(item_key(item)) & 0x7fffffff) % partition_count);
}
std::int32_t owner_of(std::int64_t item) { return partition_of(item) % instance_count; }  // instance_index

class Node : public testing_support::ChildProcess {
public:
    Node(const std::string& brokers, const std::string& db, std::int32_t index, const std::string& log_prefix)
        : ChildProcess(CHOREO_KAFKA_KILL_NODE,
                       {"--brokers", brokers, "--prefix", prefix, "--service", service, "--db", db, "--index",
                        std::to_string(index), "--count", std::to_string(instance_count)},
                       log_prefix) {}
    bool said(std::string_view word) const { return out().find(word) != std::string::npos; }
    // The last complete "progress <n>" line: the items its store holds as applied; -1 before one.
    std::int64_t progress() const {
        const std::string text = out();
        std::size_t end = text.size();
        while (true) {
            const std::size_t at = text.rfind("\nprogress ", end);
            if (at == std::string::npos) return -1;
            const std::size_t line_end = text.find('\n', at + 1);
            if (line_end != std::string::npos) return std::strtoll(text.c_str() + at + 10, nullptr, 10);
            if (at == 0) return -1;
            end = at - 1;  // a line still being written: the one before it
        }
    }
};

struct Instance {
    std::string db;
    std::unique_ptr<Node> node;
    int lives = 0;
    bool started = false;                 // the test saw its "start" line
    Clock::time_point started_at{};       // when
    std::int64_t progress = 0;
};

std::int64_t counter(SqliteStore& store, const std::string& key, std::vector<std::string>& problems) {
    Result<std::optional<Bytes>> stored = store.load_state(key);
    if (!stored.ok()) {
        problems.push_back(key + ": " + stored.status().to_string());
        return 0;
    }
    if (!stored->has_value()) return 0;
    Result<std::int64_t> value = unpack<std::int64_t>(**stored);
    if (!value.ok()) problems.push_back(key + ": " + value.status().to_string());
    return value.ok() ? *value : 0;
}

TEST(KafkaKill, ThreeInstancesOnTheirOwnStoresApplyEveryItemOnceAcrossSigkills) {
    const auto test_start = Clock::now();
    TempDir temp{"choreo-kafka-kill"};
    const std::uint64_t seed = env_number("CHOREO_KILL_SEED").value_or(std::random_device{}());
    const auto items =
        static_cast<std::int64_t>(env_number("CHOREO_KAFKA_KILL_ITEMS").value_or(CHOREO_KAFKA_KILL_ITEMS));
    ASSERT_GT(items, 0);
    std::mt19937_64 random{seed};
    std::printf("kafka_kill: seed %llu, %lld items (rerun with CHOREO_KILL_SEED=%llu)\n",
                static_cast<unsigned long long>(seed), static_cast<long long>(items),
                static_cast<unsigned long long>(seed));
    std::fflush(stdout);

    // Where every item goes, and so how many items each instance and each partition must apply.
    std::vector<std::int32_t> partition(static_cast<std::size_t>(items));
    std::array<std::int64_t, instance_count> share{};
    std::array<std::int64_t, partition_count> in_partition{};
    for (std::int64_t item = 0; item < items; item++) {
        partition[static_cast<std::size_t>(item)] = partition_of(item);
        in_partition[static_cast<std::size_t>(partition_of(item))]++;
        share[static_cast<std::size_t>(owner_of(item))]++;
    }

    MockCluster cluster{3};
    const std::string topic = service_topic(prefix, service);
    ASSERT_TRUE(cluster.create_topic(topic, partition_count).ok());
    for (std::int32_t index = 0; index < instance_count; index++) {
        ASSERT_TRUE(cluster.create_topic(instance_topic(prefix, Address::unicast(service, std::to_string(index + 1))), 1).ok());
    }
    const Address driver_address = Address::unicast("driver", "1");
    ASSERT_TRUE(cluster.create_topic(service_topic(prefix, "driver"), 1).ok());
    ASSERT_TRUE(cluster.create_topic(instance_topic(prefix, driver_address), 1).ok());
    Result<std::unique_ptr<KafkaTransport>> opened =
        KafkaTransport::open({.self = driver_address, .brokers = cluster.bootstraps(), .prefix = prefix});
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    KafkaTransport& driver = **opened;

    // The items as the runtime would send them: encoded envelopes, a unique id each, key item-<n>.
    const Address to = Address::anycast(service);
    const std::uint64_t id_high = 0x6b61666b61000000ULL | (seed & 0xffffff);
    std::vector<Bytes> bytes(static_cast<std::size_t>(items));
    std::vector<OutgoingMessage> messages(static_cast<std::size_t>(items));
    SystemClock clock;
    for (std::int64_t item = 0; item < items; item++) {
        Envelope envelope;
        envelope.id = MessageId{id_high, static_cast<std::uint64_t>(item) + 1};
        envelope.kind = "item";
        envelope.from = driver_address;
        envelope.to = to;
        envelope.correlation = item_key(item);
        envelope.sent_at_ms = clock.now_ms();
        envelope.body = pack(item);
        Result<Bytes> encoded = encode_envelope(envelope, MessageLimits{});
        ASSERT_TRUE(encoded.ok()) << encoded.status().to_string();
        bytes[static_cast<std::size_t>(item)] = std::move(encoded).value();
        messages[static_cast<std::size_t>(item)] =
            OutgoingMessage{envelope.id, to, "", item_key(item), bytes[static_cast<std::size_t>(item)]};
    }

    std::array<Instance, instance_count> instances;
    auto start = [&](std::int32_t index) {
        Instance& instance = instances[static_cast<std::size_t>(index)];
        const std::string log = temp.file("instance-" + std::to_string(index + 1) + "-life-" + std::to_string(instance.lives));
        instance.node = std::make_unique<Node>(cluster.bootstraps(), instance.db, index, log);
        instance.lives++;
        instance.started = false;
    };
    for (std::int32_t index = 0; index < instance_count; index++) {
        instances[static_cast<std::size_t>(index)].db = temp.file("instance-" + std::to_string(index + 1) + ".db");
        start(index);
    }
    auto describe_all = [&] {
        std::string text = "seed " + std::to_string(seed);
        for (std::int32_t index = 0; index < instance_count; index++) {
            text += "\ninstance " + std::to_string(index + 1) + ": " + instances[static_cast<std::size_t>(index)].node->describe();
        }
        return text;
    };

    // Sends stay this far ahead of what the instances applied: load all along, the kills included.
    const std::int64_t window = std::max<std::int64_t>(1000, items / 10);
    std::int64_t produced = 0;  // messages[0, produced) were accepted by the transport
    std::int64_t confirmed = 0;
    std::vector<bool> is_confirmed(static_cast<std::size_t>(items), false);
    std::int64_t resent = 0;
    auto last_confirmation = Clock::now();
    ReceiveBatch batch;

    int kills = 0;
    int under_load = 0;
    std::int32_t victim = std::uniform_int_distribution<std::int32_t>{0, instance_count - 1}(random);
    int delay_ms = std::uniform_int_distribution<int>{100, 1500}(random);
    std::int64_t applied = 0;
    bool all_applied = false;
    Clock::time_point all_applied_since{};
    auto last_look = Clock::time_point{};
    const auto work_start = Clock::now();
    while (true) {
        // Delivery reports: the broker stored the item.
        batch.clear();
        ASSERT_TRUE(driver.receive(batch, 1024, 1000).ok());
        for (const MessageId& id : batch.confirmed) {
            ASSERT_EQ(id.high(), id_high);
            const std::size_t item = static_cast<std::size_t>(id.low() - 1);
            ASSERT_LT(item, is_confirmed.size());
            if (!is_confirmed[item]) {
                is_confirmed[item] = true;
                confirmed++;
                last_confirmation = Clock::now();
            }
        }
        ASSERT_TRUE(batch.undeliverable.empty()) << batch.undeliverable.front().reason;
        ASSERT_TRUE(batch.deliveries.empty());
        if (produced == items && confirmed < items && ms_since(last_confirmation) > resend_after_ms) {
            for (std::size_t item = 0; item < is_confirmed.size(); item++) {
                if (is_confirmed[item]) continue;
                Result<std::size_t> accepted = driver.send({&messages[item], 1});
                ASSERT_TRUE(accepted.ok()) << accepted.status().to_string();
                resent += static_cast<std::int64_t>(*accepted);
            }
            last_confirmation = Clock::now();
        }

        if (ms_since(last_look) < 20) continue;
        last_look = Clock::now();
        applied = 0;
        for (std::int32_t index = 0; index < instance_count; index++) {
            Instance& instance = instances[static_cast<std::size_t>(index)];
            ASSERT_FALSE(instance.node->exited()) << "instance " << index + 1 << " ended on its own\n" << describe_all();
            if (!instance.started) {
                if (instance.node->said("start")) {
                    instance.started = true;
                    instance.started_at = Clock::now();
                } else {
                    ASSERT_LT(instance.node->age_ms(), start_patience_ms) << describe_all();
                }
            }
            const std::int64_t progress = instance.node->progress();
            if (progress >= 0) instance.progress = progress;
            ASSERT_LE(instance.progress, share[static_cast<std::size_t>(index)])
                << "instance " << index + 1 << " applied more than its share\n" << describe_all();
            applied += instance.progress;
        }

        const auto due = static_cast<std::int64_t>(static_cast<double>(items) * std::min(1.0, ms_since(work_start) / production_ms));
        if (produced < due && produced - applied < window) {
            const std::int64_t count = std::min(due - produced, window - (produced - applied));
            Result<std::size_t> accepted = driver.send({&messages[static_cast<std::size_t>(produced)],
                                                        static_cast<std::size_t>(count)});
            ASSERT_TRUE(accepted.ok()) << accepted.status().to_string();
            produced += static_cast<std::int64_t>(*accepted);
        }

        Instance& target = instances[static_cast<std::size_t>(victim)];
        if (kills < kills_wanted && target.started &&
            ms_since(target.started_at) >= delay_ms) {
            const bool loaded = target.progress < share[static_cast<std::size_t>(victim)];
            const std::int64_t progress_at_kill = target.progress;
            ASSERT_TRUE(target.node->kill()) << "instance " << victim + 1 << " ended on its own\n" << describe_all();
            EXPECT_EQ(target.node->err(), "") << target.node->describe();
            kills++;
            under_load += loaded ? 1 : 0;
            std::printf("kafka_kill: kill %2d: instance %d (life %d) %4d ms after its start, %s, its progress %lld of "
                        "%lld, all %lld of %lld applied, %lld sent\n",
                        kills, victim + 1, target.lives, delay_ms, loaded ? "under load" : "idle",
                        static_cast<long long>(progress_at_kill),
                        static_cast<long long>(share[static_cast<std::size_t>(victim)]),
                        static_cast<long long>(applied), static_cast<long long>(items), static_cast<long long>(produced));
            std::fflush(stdout);
            start(victim);
            victim = std::uniform_int_distribution<std::int32_t>{0, instance_count - 1}(random);
            delay_ms = std::uniform_int_distribution<int>{100, 1500}(random);
        }

        // Done once the kills are over, every instance runs, and everything is applied and stays so
        // (no late duplicate shows up) for a second.
        const bool all_started = std::all_of(instances.begin(), instances.end(), [](const Instance& i) { return i.started; });
        if (kills == kills_wanted && all_started && applied == items && confirmed == items) {
            if (!all_applied) all_applied_since = Clock::now();
            all_applied = true;
            if (ms_since(all_applied_since) > 1000) break;
        } else {
            all_applied = false;
        }
        ASSERT_LT(ms_since(work_start), finish_patience_ms)
            << "not all applied (a lost message?): " << applied << " of " << items << " applied, " << produced
            << " sent, " << confirmed << " confirmed\n" << describe_all();
    }
    const double work_ms = ms_since(test_start);
    const kafka_transport::KafkaStats driver_stats = driver.stats();
    driver.close();

    for (Instance& instance : instances) instance.node->terminate();
    for (std::int32_t index = 0; index < instance_count; index++) {
        Node& node = *instances[static_cast<std::size_t>(index)].node;
        ASSERT_TRUE(node.wait(node.age_ms() + 30'000)) << node.describe();
        EXPECT_EQ(node.exit_code(), 0) << "instance " << index + 1 << ": " << node.describe();
        EXPECT_EQ(node.err(), "") << "instance " << index + 1 << ": " << node.describe();
    }

    // The ledger: every store, read after its process is gone.
    std::vector<std::string> problems;
    auto report = [&](std::string text) {
        if (problems.size() < 40) problems.push_back(std::move(text));
    };
    std::array<std::unique_ptr<SqliteStore>, instance_count> stores;
    for (std::int32_t index = 0; index < instance_count; index++) {
        auto store = SqliteStore::open({.path = instances[static_cast<std::size_t>(index)].db, .create = false});
        ASSERT_TRUE(store.ok()) << store.status().to_string();
        Result<std::string> integrity = (*store)->integrity_check();
        ASSERT_TRUE(integrity.ok() && *integrity == "ok") << "instance " << index + 1;
        stores[static_cast<std::size_t>(index)] = std::move(store).value();
    }
    std::array<std::int64_t, instance_count> held{};
    for (std::int64_t item = 0; item < items; item++) {
        const std::string key = "item/" + std::to_string(item);
        int stores_with_it = 0;
        for (std::int32_t index = 0; index < instance_count; index++) {
            const std::int64_t count = counter(*stores[static_cast<std::size_t>(index)], key, problems);
            if (count == 0) continue;
            stores_with_it++;
            held[static_cast<std::size_t>(index)] += count;
            if (count != 1) report("item " + std::to_string(item) + " applied " + std::to_string(count) + " times by instance " + std::to_string(index + 1));
            if (index != owner_of(item)) {
                report("item " + std::to_string(item) + " (partition " + std::to_string(partition_of(item)) +
                       ") applied by instance " + std::to_string(index + 1) + ", not its owner " + std::to_string(owner_of(item) + 1));
            }
        }
        if (stores_with_it != 1) report("item " + std::to_string(item) + " is in " + std::to_string(stores_with_it) + " stores");
    }
    std::string positions_text;
    for (std::int32_t index = 0; index < instance_count; index++) {
        SqliteStore& store = *stores[static_cast<std::size_t>(index)];
        const std::string name = "instance " + std::to_string(index + 1);
        const std::int64_t progress = counter(store, "progress", problems);
        if (progress != share[static_cast<std::size_t>(index)] || held[static_cast<std::size_t>(index)] != progress) {
            report(name + ": progress " + std::to_string(progress) + ", items held " + std::to_string(held[static_cast<std::size_t>(index)]) +
                   ", its share " + std::to_string(share[static_cast<std::size_t>(index)]));
        }
        if (const std::int64_t duplicates = counter(store, "duplicates", problems); duplicates != 0) {
            report(name + ": " + std::to_string(duplicates) + " duplicates applied");
        }
        Result<std::vector<DeadLetter>> letters = store.dead_letters("", 5);
        if (!letters.ok()) report(name + ": dead_letters: " + letters.status().to_string());
        for (const DeadLetter& letter : letters.ok() ? *letters : std::vector<DeadLetter>{}) {
            report(name + ": dead letter " + letter.key + ": " + letter.reason + " " + letter.detail);
        }
        Result<std::vector<OutboxRow>> unsettled = store.unsettled_outbox(MessageId{}, 5);
        if (!unsettled.ok() || !unsettled->empty()) report(name + ": unsettled outbox rows");
        positions_text += " " + std::to_string(index + 1) + ":";
        for (std::int32_t p = 0; p < partition_count; p++) {
            Result<std::optional<std::int64_t>> position = store.consumed_position(topic + "/" + std::to_string(p));
            if (!position.ok()) {
                report(name + ": consumed_position: " + position.status().to_string());
                continue;
            }
            const bool owns = p % instance_count == index;
            if (!owns && position->has_value()) report(name + " holds an offset of partition " + std::to_string(p) + ", not its own");
            if (!owns) continue;
            positions_text += " p" + std::to_string(p) + "@" + (position->has_value() ? std::to_string(**position) : "-");
            const std::int64_t wanted = in_partition[static_cast<std::size_t>(p)];
            const std::int64_t at = position->value_or(0);
            // Without resends, each item is one record: the position is the partition's end.
            if (resent == 0 ? at != wanted : at < wanted) {
                report(name + ": partition " + std::to_string(p) + " consumed to " + std::to_string(at) + ", it holds " +
                       std::to_string(wanted) + " items");
            }
        }
    }
    for (const std::string& problem : problems) ADD_FAILURE() << "VIOLATION " << problem << " (seed " << seed << ")";
    EXPECT_TRUE(problems.empty()) << describe_all();

    std::printf("kafka_kill: seed %llu, %lld items (shares %lld/%lld/%lld), kills %d (under load %d, idle %d), "
                "lives %d/%d/%d, resent %lld, driver confirmed %llu, done in %.1f s; %s; positions%s\n",
                static_cast<unsigned long long>(seed), static_cast<long long>(items), static_cast<long long>(share[0]),
                static_cast<long long>(share[1]), static_cast<long long>(share[2]), kills, under_load, kills - under_load,
                instances[0].lives, instances[1].lives, instances[2].lives, static_cast<long long>(resent),
                static_cast<unsigned long long>(driver_stats.confirmed), work_ms / 1000,
                problems.empty() ? "verified: each item applied exactly once, by its partition's owner" : "BROKEN",
                positions_text.c_str());
    for (Instance& instance : instances) {
        const std::string out = instance.node->out();
        const std::size_t at = out.rfind("stopped ");
        if (at != std::string::npos) std::printf("kafka_kill: %s", out.substr(at).c_str());
    }
    RecordProperty("seed", std::to_string(seed));
    RecordProperty("kills_under_load", under_load);
}

}  // namespace
}  // namespace choreo
