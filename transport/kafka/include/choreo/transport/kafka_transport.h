// choreo/transport/kafka_transport.h — the Transport interface over Apache Kafka (librdkafka).
//
// Topics (docs/kafka.md):
//   `service`           → topic `<prefix>.<service>`: the instances of the service share its
//                          partitions (static assignment, or a consumer group on a shared store);
//   `service/instance`  → topic `<prefix>.<service>.<instance>`: read by that instance only, so
//                          replies reach the owner of a continuation.
// A record's key is the message's partition key (the correlation id; the message id when there is
// none), so one saga or execution stays in one partition, in order, and every retransmission of a
// message lands in the same partition: the one the same instance owns (design §4.6). The record's
// value is the encoded envelope (docs/protocol.md), nothing else.
//
// Exactly once (design §4.1): each delivery carries its position `<topic>/<partition>` + offset;
// the runtime stores the next offset per partition in the same commit as the effects. When this
// endpoint starts consuming a partition it seeks to the offset in `options.store`; Kafka's own
// committed offsets are only a hint, written after the store commit. They are used only where the
// store has no offset (no store given, or a partition it never consumed); being behind the store,
// they may deliver again what was applied, which the dedup table drops.
//
// Ownership (design §7): instances that keep separate stores must own fixed partitions, so
// `Assignment::static_partitions` (each instance names its partitions, or its share index/count);
// `Assignment::dynamic_group` (Kafka moves partitions on a rebalance) is refused at open() unless
// the store is shared by every instance (`Store::features().shared`).
//
// Delivery reports confirm outbox rows: a send is confirmed once the broker stored it (acks=all,
// idempotent producer). A send that fails or times out is not confirmed; the outbox retransmits it.
//
//   choreo::kafka_transport::KafkaOptions options{.self = choreo::Address::unicast("orders", "1"),
//                                                 .brokers = "localhost:9092", .store = &store};
//   auto transport = choreo::kafka_transport::KafkaTransport::open(options).value();
//   choreo::Service svc{{.name = "orders", .instance = "1"}, *transport, store};
//
// Threading: as choreo/transport.h says — one runtime thread calls send/receive/acknowledge/
// route (and reads options.store from inside receive); wake() and close() may come from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "choreo/store.h"
#include "choreo/transport.h"

namespace choreo::kafka_transport {

enum class Assignment {
    static_partitions,  // this instance consumes fixed partitions (separate stores: the default)
    dynamic_group,      // a Kafka consumer group balances partitions (needs a shared store)
};

struct KafkaOptions {
    Address self{};                  // this endpoint's unicast address `service/instance`
    std::string brokers{};           // bootstrap.servers, e.g. "10.0.0.5:9092,10.0.0.6:9092"
    std::string prefix = "choreo";   // topic prefix; letters, digits, '.', '_', '-'
    // Where consumed positions are read from when a partition is (re)assigned: the same store the
    // Service commits to. Null: Kafka's committed offsets are used (at-least-once, see above).
    Store* store = nullptr;
    Assignment assignment = Assignment::static_partitions;
    // static_partitions: the partitions of `<prefix>.<service>` this instance consumes. Empty:
    // partitions p with p % instance_count == instance_index (all of them for 1 instance).
    std::vector<std::int32_t> partitions{};
    std::int32_t instance_index = 0;
    std::int32_t instance_count = 1;
    // Creates the service topic with this many partitions (and the instance topic with one) at
    // open() if missing; 0 leaves topic creation to the cluster (auto-create) or to operators.
    std::int32_t create_topic_partitions = 0;
    std::int16_t replication_factor = -1;  // for created topics; -1: the broker default
    // librdkafka settings passed through unchanged to the producer and the consumers
    // (security.protocol, sasl.*, ssl.*, linger.ms, ...). The transport's own (idempotence,
    // offsets, group.id) win over these.
    std::map<std::string, std::string> settings{};
    std::size_t message_bytes_max = 1 << 20;     // envelope bytes; larger sends are refused
    std::int32_t metadata_timeout_ms = 10'000;   // at open(): the cluster must answer within this
    std::int32_t commit_hint_interval_ms = 1'000;  // Kafka offset commits (hints) at most this often
    // dynamic_group: a revocation waits this long at most for the runtime to commit and acknowledge
    // what it received from the revoked partitions (inputs kept for handler retries may take longer).
    std::int32_t revoke_wait_ms = 5'000;
    std::size_t produce_queue_max = 100'000;     // produced but not yet reported: backpressure
};

struct KafkaStats {
    std::uint64_t produced = 0;            // records handed to librdkafka
    std::uint64_t confirmed = 0;           // delivery reports with success
    std::uint64_t produce_failed = 0;      // delivery reports with an error (retransmitted later)
    std::uint64_t backpressure = 0;        // send calls that stopped short (queue full)
    std::uint64_t refused_too_large = 0;
    std::uint64_t consumed = 0;            // records delivered to the runtime
    std::uint64_t client_errors = 0;       // errors librdkafka reported (broker down, timeouts): it retries
    std::uint64_t assignments = 0;         // partitions (re)assigned, each seeked to its stored offset
    std::uint64_t revocations = 0;         // partitions taken away by a rebalance
    std::uint64_t commit_hints = 0;        // offset commits sent to Kafka
    std::uint64_t producer_restarts = 0;   // producers recreated after a fatal (idempotence) error
};

// Topic names (docs/kafka.md).
std::string service_topic(std::string_view prefix, std::string_view service);
std::string instance_topic(std::string_view prefix, const Address& unicast);

class KafkaTransport final : public Transport {
public:
    // Connects, checks the topics and the assignment against the cluster's metadata, and refuses
    // what breaks the ownership rule. Errors (Status reason): invalid_options,
    // dynamic_group_needs_shared_store, kafka_unreachable, unknown_topic, no_such_partition,
    // topic_create_failed, kafka_config (a librdkafka setting it refused, with its message).
    static Result<std::unique_ptr<KafkaTransport>> open(KafkaOptions options);
    ~KafkaTransport() override;
    KafkaTransport(const KafkaTransport&) = delete;
    KafkaTransport& operator=(const KafkaTransport&) = delete;

    Features features() const override {
        // The broker keeps messages for receivers that are not running (persistence) and a
        // partition keeps one key's order; an instance that restarts resumes from its stored
        // offset (redelivery); instances share the service's partitions (consumer_groups).
        return {.ordering = true, .persistence = true, .consumer_groups = true, .redelivery = true};
    }
    Address local_address() const override;
    std::string route(const Address& to) override;  // empty: the key picks the partition
    Result<std::size_t> send(std::span<const OutgoingMessage> batch) override;
    // Also fails with kafka_consumer_fatal when librdkafka reports a consumer unusable for good
    // (e.g. a fenced group.instance.id): the service stops with that reason.
    Status receive(ReceiveBatch& out, std::size_t deliveries_max, std::int64_t timeout_us) override;
    Status acknowledge(std::span<const DeliveryTag> tags) override;
    void wake() override;
    void close() override;

    // The partitions of the service topic this endpoint consumes now.
    std::vector<std::int32_t> assigned_partitions() const;
    KafkaStats stats() const;

    class Impl;

private:
    explicit KafkaTransport(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace choreo::kafka_transport
