// kafka_transport_test.cpp — the Kafka transport on librdkafka's mock cluster (real Kafka protocol
// over loopback TCP, in this process): the transport conformance suite (dynamic consumer group on
// a shared store), then what only Kafka has: the ownership rule at open(), static partition
// shares, resuming from the store's offset rather than Kafka's, refusals, and services that lose
// nothing and apply nothing twice through broker faults.
#include "choreo/transport/kafka_transport.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include <librdkafka/rdkafka.h>

#include "choreo/durability/memory_store.h"
#include "choreo/durability/sqlite_store.h"
#include "choreo/service.h"
#include "choreo/transport/kafka_mock.h"
#include "conformance/transport_conformance.h"
#include "support/temp_dir.h"

namespace choreo::kafka_transport {
namespace {

using namespace std::chrono_literals;
using conformance::deadline_after;
using conformance::fresh_address;
using conformance::fresh_service_name;
using conformance::make_outbox;
using conformance::Outbox;
using conformance::Received;
using conformance::receive_until;

constexpr std::int32_t test_partitions = 4;

std::unique_ptr<KafkaTransport> open_endpoint(KafkaOptions options) {
    Result<std::unique_ptr<KafkaTransport>> opened = KafkaTransport::open(std::move(options));
    EXPECT_TRUE(opened.ok()) << opened.status().to_string();
    return opened.ok() ? std::move(opened).value() : nullptr;
}

// The topics of `self` with test_partitions partitions (the mock cluster would otherwise create
// them with its own default when first asked for their metadata).
void create_topics(MockCluster& cluster, const Address& self) {
    ASSERT_TRUE(cluster.create_topic(service_topic("choreo", self.service()), test_partitions).ok());
    ASSERT_TRUE(cluster.create_topic(instance_topic("choreo", self), 1).ok());
}

// Every endpoint of one test on one fresh mock cluster; instances of a service form a dynamic
// consumer group over one shared (memory) store, as design §7 allows.
class KafkaHarness final : public conformance::TransportHarness {
public:
    Transport::Features features() const override {
        return {.ordering = true, .persistence = true, .consumer_groups = true, .redelivery = true};
    }
    std::unique_ptr<Transport> open(const Address& self) override {
        create_topics(cluster_, self);
        return open_endpoint({.self = self,
                              .brokers = cluster_.bootstraps(),
                              .store = &store_,
                              .assignment = Assignment::dynamic_group,
                              .create_topic_partitions = test_partitions});
    }
    std::chrono::milliseconds patience() const override { return 60s; }  // group joins take seconds
    bool confirms_on_acknowledge() const override { return false; }

private:
    MockCluster cluster_{3};
    MemoryStore store_;
};

using conformance::TransportConformance;
INSTANTIATE_TEST_SUITE_P(Kafka, TransportConformance,
                         ::testing::Values(conformance::TransportHarnessFactory{
                             "kafka", [] { return std::make_unique<KafkaHarness>(); }}),
                         conformance::harness_name);

KafkaOptions static_options(MockCluster& cluster, const Address& self, Store* store) {
    create_topics(cluster, self);
    return {.self = self, .brokers = cluster.bootstraps(), .store = store, .create_topic_partitions = test_partitions};
}

// ---- open(): the ownership rule and the cluster's metadata -----------------------------------

TEST(KafkaTransport, ADynamicGroupWithoutASharedStoreIsRefusedAtOpen) {
    MockCluster cluster;
    testing_support::TempDir dir;
    auto sqlite = SqliteStore::open({.path = (dir.path() / "store.db").string()});
    ASSERT_TRUE(sqlite.ok()) << sqlite.status().to_string();
    for (Store* store : {static_cast<Store*>(sqlite.value().get()), static_cast<Store*>(nullptr)}) {
        KafkaOptions options = static_options(cluster, fresh_address(), store);
        options.assignment = Assignment::dynamic_group;
        Result<std::unique_ptr<KafkaTransport>> opened = KafkaTransport::open(options);
        ASSERT_FALSE(opened.ok());
        EXPECT_EQ(opened.status().reason(), "dynamic_group_needs_shared_store") << opened.status().to_string();
    }
    // Static assignment with one store per instance is the supported way.
    EXPECT_NE(open_endpoint(static_options(cluster, fresh_address(), sqlite.value().get())), nullptr);
}

TEST(KafkaTransport, BadOptionsAndMissingPartitionsAreRefusedClearly) {
    MockCluster cluster;
    KafkaOptions options = static_options(cluster, fresh_address(), nullptr);
    options.partitions = {0, test_partitions};  // one past the last
    Result<std::unique_ptr<KafkaTransport>> opened = KafkaTransport::open(options);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().reason(), "no_such_partition") << opened.status().to_string();

    options = static_options(cluster, fresh_address(), nullptr);
    options.settings["no.such.setting"] = "1";
    opened = KafkaTransport::open(options);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().reason(), "kafka_config");

    options.self = Address::anycast("orders");
    EXPECT_EQ(KafkaTransport::open(options).status().reason(), "invalid_options");
    options = static_options(cluster, fresh_address(), nullptr);
    options.instance_index = 3;
    options.instance_count = 3;
    EXPECT_EQ(KafkaTransport::open(options).status().reason(), "invalid_options");
}

TEST(KafkaTransport, AnUnreachableClusterFailsOpenWithinTheTimeout) {
    KafkaOptions options{.self = fresh_address(), .brokers = "127.0.0.1:1", .metadata_timeout_ms = 1'500};
    options.create_topic_partitions = 0;
    Result<std::unique_ptr<KafkaTransport>> opened = KafkaTransport::open(options);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().reason(), "kafka_unreachable") << opened.status().to_string();
}

// ---- static partition shares -----------------------------------------------------------------

TEST(KafkaTransport, StaticInstancesEachConsumeOnlyTheirShare) {
    constexpr std::int32_t partitions = 12;
    constexpr std::size_t message_count = 120;
    MockCluster cluster{3};
    const std::string service = fresh_service_name();
    ASSERT_TRUE(cluster.create_topic(service_topic("choreo", service), partitions).ok());
    std::vector<std::unique_ptr<KafkaTransport>> instances;
    for (std::int32_t index = 0; index < 3; index++) {
        KafkaOptions options = static_options(cluster, Address::unicast(service, std::to_string(index + 1)), nullptr);
        options.instance_index = index;
        options.instance_count = 3;
        instances.push_back(open_endpoint(options));
        ASSERT_NE(instances.back(), nullptr);
        EXPECT_EQ(instances.back()->assigned_partitions().size(), 0u) << "assigned at the first receive";
    }
    std::unique_ptr<KafkaTransport> sender = open_endpoint(static_options(cluster, fresh_address(), nullptr));
    Outbox outbox = make_outbox(message_count, sender->local_address(), Address::anycast(service));
    for (std::size_t index = 0; index < message_count; index++) outbox.messages[index].key = "key-" + std::to_string(index);
    ASSERT_EQ(conformance::send_all(*sender, outbox.messages, deadline_after(30s)), message_count);

    Received at[3];
    std::map<MessageId, std::size_t> where;
    const auto deadline = deadline_after(60s);
    while (where.size() < message_count && std::chrono::steady_clock::now() < deadline) {
        for (std::size_t index = 0; index < 3; index++) {
            const std::size_t before = at[index].deliveries.size();
            ASSERT_TRUE(conformance::receive_once(*instances[index], at[index], {.acknowledge = true}).ok());
            for (std::size_t seen = before; seen < at[index].deliveries.size(); seen++) {
                const Delivery& delivery = at[index].deliveries[seen];
                ASSERT_TRUE(delivery.position.has_value());
                const std::int32_t partition = std::stoi(delivery.position->stream.substr(delivery.position->stream.rfind('/') + 1));
                EXPECT_EQ(partition % 3, static_cast<std::int32_t>(index)) << "a partition of another instance";
                where.emplace(at[index].delivered_order[seen], index);
            }
        }
    }
    EXPECT_EQ(where.size(), message_count);
    std::size_t total = 0;
    for (std::size_t index = 0; index < 3; index++) {
        EXPECT_EQ(instances[index]->assigned_partitions(),
                  (std::vector<std::int32_t>{static_cast<std::int32_t>(index), static_cast<std::int32_t>(index + 3),
                                             static_cast<std::int32_t>(index + 6), static_cast<std::int32_t>(index + 9)}));
        EXPECT_GT(at[index].delivered_count.size(), 0u) << "keys spread over every share";
        total += at[index].deliveries.size();
    }
    EXPECT_EQ(total, message_count) << "each message went to exactly one instance, once";
}

// ---- offsets: the store is the truth ---------------------------------------------------------

TEST(KafkaTransport, AStartResumesFromTheStoresOffsetNotKafkas) {
    MockCluster cluster;
    MemoryStore store;
    const Address receiver_address = fresh_address();
    std::unique_ptr<KafkaTransport> sender = open_endpoint(static_options(cluster, fresh_address(), nullptr));
    std::unique_ptr<KafkaTransport> receiver = open_endpoint(static_options(cluster, receiver_address, &store));
    Outbox outbox = make_outbox(10, sender->local_address(), receiver_address);
    ASSERT_EQ(conformance::send_all(*sender, outbox.messages, deadline_after(30s)), 10u);
    Received first;
    // Delivered and acknowledged (so Kafka's offset moves to 10), but the store commits only 6.
    ASSERT_TRUE(receive_until(*receiver, first, [](const Received& r) { return r.delivered_count.size() == 10; },
                              deadline_after(30s), {.acknowledge = true}));
    CommitBatch batch;
    batch.positions.push_back({instance_topic("choreo", receiver_address) + "/0", 6});
    ASSERT_TRUE(store.commit(batch).ok());
    receiver->close();
    receiver.reset();

    receiver = open_endpoint(static_options(cluster, receiver_address, &store));
    Received again;
    ASSERT_TRUE(receive_until(*receiver, again, [](const Received& r) { return r.delivered_count.size() == 4; },
                              deadline_after(30s), {.acknowledge = true}));
    conformance::receive_for(*receiver, again, 300ms, {.acknowledge = true});
    ASSERT_EQ(again.deliveries.size(), 4u);
    EXPECT_EQ(again.deliveries.front().position->offset, 6);
    for (std::size_t index = 0; index < 4; index++) EXPECT_EQ(again.delivered_order[index], outbox.ids[6 + index]);
}

// Design §4.6: every retransmission of a message reaches the instance the first copy reached. With
// no partition key the message id is the key, so each copy lands in the same partition.
TEST(KafkaTransport, RetransmissionsWithoutAKeyLandInTheSamePartition) {
    constexpr std::size_t message_count = 8;
    constexpr int copies = 3;
    MockCluster cluster;
    const Address receiver_address = fresh_address();
    std::unique_ptr<KafkaTransport> receiver = open_endpoint(static_options(cluster, receiver_address, nullptr));
    std::unique_ptr<KafkaTransport> sender = open_endpoint(static_options(cluster, fresh_address(), nullptr));
    Outbox outbox = make_outbox(message_count, sender->local_address(), receiver_address.service_address());
    for (OutgoingMessage& message : outbox.messages) message.key.clear();
    Received received;
    for (int copy = 1; copy <= copies; copy++) {  // each copy after the previous one was confirmed
        ASSERT_EQ(conformance::send_all(*sender, outbox.messages, deadline_after(30s)), message_count);
        Received confirmations;
        ASSERT_TRUE(receive_until(*sender, confirmations,
                                  [&](const Received& r) { return r.confirmed_count.size() == message_count; },
                                  deadline_after(30s)));
    }
    ASSERT_TRUE(receive_until(*receiver, received, [&](const Received& r) {
        return r.deliveries.size() == message_count * copies;
    }, deadline_after(30s), {.acknowledge = true}));
    std::map<MessageId, std::set<std::string>> streams;
    for (std::size_t index = 0; index < received.deliveries.size(); index++) {
        streams[received.delivered_order[index]].insert(received.deliveries[index].position->stream);
    }
    std::set<std::string> used;
    for (const auto& [id, seen] : streams) {
        EXPECT_EQ(seen.size(), 1u) << id.to_string() << " went to " << seen.size() << " partitions";
        used.insert(seen.begin(), seen.end());
    }
    EXPECT_GT(used.size(), 1u) << "ids as keys spread over the partitions";
}

// The Kafka offset commit on close is a hint: with the broker gone it must not hold up shutdown.
TEST(KafkaTransport, ClosingWhileTheBrokerIsDownEndsPromptly) {
    MockCluster cluster;
    const Address receiver_address = fresh_address();
    std::unique_ptr<KafkaTransport> sender = open_endpoint(static_options(cluster, fresh_address(), nullptr));
    std::unique_ptr<KafkaTransport> receiver = open_endpoint(static_options(cluster, receiver_address, nullptr));
    Outbox outbox = make_outbox(5, sender->local_address(), receiver_address);
    ASSERT_EQ(conformance::send_all(*sender, outbox.messages, deadline_after(30s)), 5u);
    Received received;
    ASSERT_TRUE(receive_until(*receiver, received, [](const Received& r) { return r.delivered_count.size() == 5; },
                              deadline_after(30s), {.acknowledge = true}));
    ASSERT_TRUE(cluster.set_broker_down(1).ok());
    const auto started = std::chrono::steady_clock::now();
    receiver->close();
    receiver.reset();
    sender.reset();
    // A hang check, not a speed check: about 8 s on a quiet machine (2 s hint, 3 s group goodbye,
    // 2 s flush, then librdkafka joins its threads), up to 48 s in CI's parallel runs, all of the
    // rest in librdkafka's thread join. Without the bounded waits it did not end within 120 s.
    EXPECT_LT(std::chrono::steady_clock::now() - started, 90s) << "shutdown waited for a broker that is down";
    ASSERT_TRUE(cluster.set_broker_up(1).ok());
}

TEST(KafkaTransport, ATooLargeMessageIsReportedUndeliverable) {
    MockCluster cluster;
    KafkaOptions options = static_options(cluster, fresh_address(), nullptr);
    options.message_bytes_max = 200;
    std::unique_ptr<KafkaTransport> sender = open_endpoint(options);
    Outbox outbox = make_outbox(1, sender->local_address(), fresh_address(), {}, "k");
    std::string big(300, 'x');
    outbox.bytes[0] = conformance::envelope_bytes(outbox.ids[0], sender->local_address(), outbox.messages[0].to, big);
    outbox.messages[0].bytes = outbox.bytes[0];
    ASSERT_EQ(sender->send(outbox.messages).value(), 1u);
    ReceiveBatch batch;
    ASSERT_TRUE(sender->receive(batch, 10, 1000).ok());
    ASSERT_EQ(batch.undeliverable.size(), 1u);
    EXPECT_EQ(batch.undeliverable[0].reason, "message_too_large");
    EXPECT_EQ(batch.undeliverable[0].id, outbox.ids[0]);
    EXPECT_EQ(sender->stats().produced, 0u);
}

// ---- dynamic groups: a revocation waits for the batch in flight -------------------------------

// Instance 1 holds every record of the service unacknowledged (its runtime has not committed them)
// when instance 2 joins. The revocation waits: instance 2 gets no partition and reads nothing
// until instance 1 committed and acknowledged, and then nothing of what instance 1 applied: it
// resumes at the offsets in the shared store.
TEST(KafkaTransport, ARevocationWaitsForTheBatchInFlight) {
    constexpr std::size_t message_count = 20;
    MockCluster cluster;
    MemoryStore shared;
    const std::string service = fresh_service_name();
    auto open_instance = [&](const std::string& instance) {
        KafkaOptions options = static_options(cluster, Address::unicast(service, instance), &shared);
        options.assignment = Assignment::dynamic_group;
        options.revoke_wait_ms = 120'000;  // only the acknowledgement ends the wait here
        // The mock cluster's coordinator ends a rebalance only when its timer (the session timeout)
        // fires; shorter sessions keep this test short. Real brokers end it when all rejoined.
        options.settings["session.timeout.ms"] = "6000";
        options.settings["heartbeat.interval.ms"] = "500";
        return open_endpoint(options);
    };
    std::unique_ptr<KafkaTransport> first = open_instance("1");
    std::unique_ptr<KafkaTransport> sender = open_endpoint(static_options(cluster, fresh_address(), nullptr));
    Outbox outbox = make_outbox(message_count, sender->local_address(), Address::anycast(service));
    for (std::size_t index = 0; index < message_count; index++) outbox.messages[index].key = "key-" + std::to_string(index);
    ASSERT_EQ(conformance::send_all(*sender, outbox.messages, deadline_after(30s)), message_count);
    Received held;  // not acknowledged: the batch in flight
    ASSERT_TRUE(receive_until(*first, held, [&](const Received& r) { return r.delivered_count.size() == message_count; },
                              deadline_after(60s)));

    std::unique_ptr<KafkaTransport> second = open_instance("2");
    Received at_second;
    const auto holding_until = std::chrono::steady_clock::now() + 4s;  // a rebalance starts within seconds
    while (std::chrono::steady_clock::now() < holding_until) {
        ASSERT_TRUE(conformance::receive_once(*second, at_second, {.acknowledge = true}).ok());
        ASSERT_TRUE(conformance::receive_once(*first, held).ok());
    }
    EXPECT_TRUE(at_second.deliveries.empty()) << "instance 2 read records instance 1 had not committed";
    EXPECT_TRUE(second->assigned_partitions().empty());
    EXPECT_EQ(first->stats().revocations, 0u) << "the revocation did not wait";

    // What the runtime does with its batch: commit the effects with the next offsets, then acknowledge.
    std::vector<DeliveryTag> tags;
    std::map<std::string, std::int64_t> next_offsets;
    for (const Delivery& delivery : held.deliveries) {
        tags.push_back(delivery.tag);
        std::int64_t& next = next_offsets[delivery.position->stream];
        next = std::max(next, delivery.position->offset + 1);
    }
    CommitBatch batch;
    for (const auto& [stream, next] : next_offsets) batch.positions.push_back({stream, next});
    ASSERT_TRUE(shared.commit(batch).ok());
    ASSERT_TRUE(first->acknowledge(tags).ok());
    Received after_first;
    auto rebalanced = [&] { return !second->assigned_partitions().empty() && first->stats().revocations > 0; };
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!rebalanced() && std::chrono::steady_clock::now() < deadline) {
        ASSERT_TRUE(conformance::receive_once(*first, after_first, {.acknowledge = true}).ok());
        ASSERT_TRUE(conformance::receive_once(*second, at_second, {.acknowledge = true}).ok());
    }
    ASSERT_TRUE(rebalanced()) << "the group never rebalanced after the acknowledgement";
    conformance::receive_for(*second, at_second, 1s, {.acknowledge = true});
    EXPECT_TRUE(at_second.deliveries.empty()) << at_second.deliveries.size() << " committed records read again";
}

// ---- services through broker faults ----------------------------------------------------------

struct Applied {
    std::mutex mutex;
    std::map<int, int> times;
    std::size_t distinct() {
        std::lock_guard lock{mutex};
        return times.size();
    }
};

// One service on a Kafka endpoint with a memory store, run on its own thread.
struct Node {
    Node(KafkaOptions options, const std::function<void(Service&)>& setup) {
        options.store = &store;
        transport = open_endpoint(std::move(options));
        const Address self = transport->local_address();
        service = std::make_unique<Service>(ServiceOptions{.name = self.service(), .instance = self.instance()},
                                            *transport, store);
        setup(*service);
        runner = std::thread{[this] { ended = service->run(); }};
    }
    ~Node() {
        service->stop();
        runner.join();
    }
    std::vector<DeadLetter> dead_letters() { return store.dead_letters("", 100).value(); }

    MemoryStore store;
    std::unique_ptr<KafkaTransport> transport;
    std::unique_ptr<Service> service;
    Status ended;
    std::thread runner;
};

bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds patience) {
    const auto deadline = std::chrono::steady_clock::now() + patience;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(20ms);
    }
    return true;
}

// Every record in `topic` from its beginning, counted by a plain librdkafka consumer.
std::size_t count_records(MockCluster& cluster, const std::string& topic) {
    char error[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", cluster.bootstraps().c_str(), error, sizeof error);
    rd_kafka_conf_set(conf, "group.id", "count-records", error, sizeof error);
    rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(test_partitions);
    for (std::int32_t partition = 0; partition < test_partitions; partition++) {
        rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_assign(consumer, list);
    rd_kafka_topic_partition_list_destroy(list);
    std::size_t records = 0;
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < until) {
        rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer, 100);
        if (message == nullptr) continue;
        if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) records++;
        rd_kafka_message_destroy(message);
    }
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    return records;
}

// Sends `count` messages in rounds while `fault` disturbs the cluster between rounds; every one
// must be applied exactly once and every send confirmed.
void exactly_once_through(const std::function<void(MockCluster&, const std::string& topic, int round)>& fault) {
    constexpr int rounds = 5;
    constexpr int per_round = 60;
    MockCluster cluster{3};
    const std::string server_name = fresh_service_name();
    const std::string topic = service_topic("choreo", server_name);
    ASSERT_TRUE(cluster.create_topic(topic, test_partitions).ok());
    Applied applied;
    Node server{static_options(cluster, Address::unicast(server_name, "1"), nullptr), [&](Service& svc) {
                    svc.on("count", [&](Context&, const int& index) {
                        std::lock_guard lock{applied.mutex};
                        applied.times[index]++;
                    });
                }};
    Node client{static_options(cluster, fresh_address(), nullptr), [](Service&) {}};
    for (int round = 0; round < rounds; round++) {
        fault(cluster, topic, round);
        for (int index = round * per_round; index < (round + 1) * per_round; index++) {
            ASSERT_TRUE(client.service->post(server_name, "count", index).ok());
        }
        std::this_thread::sleep_for(300ms);
    }
    fault(cluster, topic, -1);  // heal
    EXPECT_TRUE(wait_for([&] { return applied.distinct() == static_cast<std::size_t>(rounds * per_round); }, 120s))
        << applied.distinct() << " of " << rounds * per_round << " applied; server consumed "
        << server.transport->stats().consumed << ", client produced " << client.transport->stats().produced
        << ", confirmed " << client.transport->stats().confirmed << ", failed "
        << client.transport->stats().produce_failed << "; server " << server.service->stats().applied << " applied, " << server.service->stats().duplicates
        << " duplicates, " << server.service->stats().retries << " retries, server client errors "
        << server.transport->stats().client_errors << "; records in the topic " << count_records(cluster, topic);
    EXPECT_TRUE(wait_for([&] { return client.service->unsettled_sends() == 0; }, 120s))
        << client.service->unsettled_sends() << " sends never confirmed";
    std::lock_guard lock{applied.mutex};
    for (const auto& [index, times] : applied.times) EXPECT_EQ(times, 1) << "message " << index;
    EXPECT_TRUE(client.dead_letters().empty());
    EXPECT_TRUE(server.dead_letters().empty());
}

TEST(KafkaService, ABrokerGoingDownAndComingBackLosesNothing) {
    exactly_once_through([](MockCluster& cluster, const std::string&, int round) {
        Status changed;
        if (round == 1) changed = cluster.set_broker_down(1);
        if (round == 3) changed = cluster.set_broker_up(1);
        if (round == 3 && changed.ok()) changed = cluster.set_broker_down(2);
        if (round == -1) changed = cluster.set_broker_up(2);
        ASSERT_TRUE(changed.ok()) << changed.to_string();
    });
}

TEST(KafkaService, LeaderChangesAndRequestErrorsLoseNothing) {
    exactly_once_through([](MockCluster& cluster, const std::string& topic, int round) {
        if (round < 0) return;
        for (std::int32_t partition = 0; partition < test_partitions; partition++) {
            ASSERT_TRUE(cluster.set_partition_leader(topic, partition, 1 + (partition + round) % 3).ok());
        }
        cluster.push_request_errors(0, 3, 6);   // Produce: NOT_LEADER_FOR_PARTITION
        // Not Produce REQUEST_TIMED_OUT right after NOT_LEADER: librdkafka 2.0.2's mock broker then
        // sometimes acknowledges records it never stored (1-4 of 300 confirmed by the idempotent
        // producer and absent from the partition, counted with a plain consumer). Each error alone
        // passed every run; a real broker does not acknowledge what it did not append.
        cluster.push_request_errors(1, 2, 7);   // Fetch: REQUEST_TIMED_OUT
        cluster.push_request_errors(1, 3, 6);   // Fetch: NOT_LEADER_FOR_PARTITION
        cluster.push_request_errors(8, 2, 15);  // OffsetCommit: COORDINATOR_NOT_AVAILABLE (hints only)
    });
}

TEST(KafkaService, ASlowBrokerOnlySlowsThingsDown) {
    exactly_once_through([](MockCluster& cluster, const std::string&, int round) {
        for (std::int32_t broker = 1; broker <= 3; broker++) {
            ASSERT_TRUE(cluster.set_broker_rtt(broker, round >= 0 && round < 3 ? 150 : 0).ok());
        }
    });
}

}  // namespace
}  // namespace choreo::kafka_transport
