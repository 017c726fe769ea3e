// kafka_impl.h — the inside of KafkaTransport (private to transport/kafka/src).
//
// One idempotent producer, and one consumer per source of input:
//   static_partitions: one consumer, assigned the service topic's partitions of this instance and
//                      the instance topic's partitions;
//   dynamic_group:     a consumer subscribed to the service topic (Kafka balances it) and one
//                      assigned the instance topic.
// Each librdkafka queue writes a byte to one pipe when it becomes non-empty, so receive() waits
// on one descriptor for deliveries, delivery reports, rebalances and wake().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <librdkafka/rdkafka.h>

#include "choreo/transport/kafka_transport.h"

namespace choreo::kafka_transport {

struct HandleDeleter {
    void operator()(rd_kafka_t* handle) const { rd_kafka_destroy(handle); }
};
using Handle = std::unique_ptr<rd_kafka_t, HandleDeleter>;

struct QueueDeleter {
    void operator()(rd_kafka_queue_t* queue) const { rd_kafka_queue_destroy(queue); }
};
using Queue = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;

struct TopicDeleter {
    void operator()(rd_kafka_topic_t* topic) const { rd_kafka_topic_destroy(topic); }
};
using TopicHandle = std::unique_ptr<rd_kafka_topic_t, TopicDeleter>;

struct PartitionListDeleter {
    void operator()(rd_kafka_topic_partition_list_t* list) const { rd_kafka_topic_partition_list_destroy(list); }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;

struct TopicPartition {
    std::string topic;
    std::int32_t partition = 0;
    friend auto operator<=>(const TopicPartition&, const TopicPartition&) = default;
};

// "<topic>/<partition>": the stream name of design §4.1, as the store keeps it.
std::string stream_name(const TopicPartition& partition);

// One partition this endpoint consumes now.
struct Consumer;

struct PartitionProgress {
    Consumer* consumer = nullptr;        // the consumer that reads it
    std::set<std::int64_t> outstanding;  // delivered, not acknowledged yet
    std::int64_t acknowledged_next = -1; // highest acknowledged offset + 1
    std::int64_t hinted = -1;            // the offset last committed to Kafka
    // What Kafka may store as this group's position: never past an unacknowledged delivery.
    std::int64_t hint() const;
};


struct Consumer {
    Handle handle;
    Queue queue;             // rd_kafka_queue_get_consumer
    bool subscribed = false; // dynamic_group: Kafka assigns; else assigned by this endpoint
    bool maybe_more = false; // the last drain stopped at its limit: do not wait for an event
    PartitionList pending_revoke;  // a revocation waiting for the batch in flight (dynamic_group)
    std::chrono::steady_clock::time_point revoke_deadline{};
};

struct DeliveredRecord {
    TopicPartition partition;
    std::int64_t offset = 0;
};

struct AtomicStats {
    std::atomic<std::uint64_t> produced{0}, confirmed{0}, produce_failed{0}, backpressure{0},
        refused_too_large{0}, consumed{0}, client_errors{0}, assignments{0}, revocations{0},
        commit_hints{0}, producer_restarts{0};
    KafkaStats snapshot() const;
};

class KafkaTransport::Impl {
public:
    explicit Impl(KafkaOptions given) : options(std::move(given)) {}
    ~Impl();

    // ---- set-up (kafka_transport.cpp)
    Status start();
    Result<Handle> make_client(rd_kafka_type_t type, const std::map<std::string, std::string>& own);
    Status make_producer();
    Status create_topic(const std::string& topic, std::int32_t partitions);
    Result<std::int32_t> ensure_topic(const std::string& topic, std::int32_t partitions);
    Result<std::int32_t> partition_count(const std::string& topic);
    Status plan_static_partitions();
    Status make_consumers();
    Status make_wake_pipe();
    void watch(rd_kafka_queue_t* queue);
    void signal_pipe();
    void drain_pipe();
    void wait_for_event(std::int64_t timeout_us);

    // ---- produce (kafka_produce.cpp)
    Result<std::size_t> send(std::span<const OutgoingMessage> batch);
    enum class Offer { accepted, backpressure };
    Offer offer(const OutgoingMessage& message);
    rd_kafka_topic_t* topic_handle(const Address& to);
    void on_delivery_report(const rd_kafka_message_t& report);
    void serve_producer(ReceiveBatch& out);
    void restart_producer_if_fatal();

    // ---- consume (kafka_consume.cpp)
    Status start_consuming();
    Status assign_static(Consumer& consumer, const std::vector<TopicPartition>& partitions);
    Result<std::int64_t> start_offset(const TopicPartition& partition);
    void on_rebalance(rd_kafka_t* handle, rd_kafka_resp_err_t error, rd_kafka_topic_partition_list_t* partitions);
    void on_assign(rd_kafka_t* handle, rd_kafka_topic_partition_list_t* partitions);
    Consumer* consumer_of(rd_kafka_t* handle);
    void on_revoke(rd_kafka_t* handle, rd_kafka_topic_partition_list_t* partitions);
    void finish_revoke(Consumer& consumer, const rd_kafka_topic_partition_list_t& partitions);
    bool revocation_waits(Consumer& consumer);
    bool unacknowledged_in(const std::set<TopicPartition>& partitions) const;
    std::size_t drain(Consumer& consumer, ReceiveBatch& out, std::size_t room);
    void take_record(const rd_kafka_message_t& record, ReceiveBatch& out);
    Status receive(ReceiveBatch& out, std::size_t deliveries_max, std::int64_t timeout_us);
    void acknowledge(std::span<const DeliveryTag> tags);
    enum class HintCommit { background, bounded, final };
    static constexpr int hint_commit_wait_ms = 2'000;
    static constexpr int consumer_close_wait_ms = 3'000;
    void commit_hints(HintCommit how);
    void commit_hints_of(Consumer& consumer, HintCommit how, const std::set<TopicPartition>* only);
    void close_consumer(Consumer& consumer);

    KafkaOptions options;
    std::string service_topic_name;
    std::string instance_topic_name;
    std::vector<TopicPartition> static_service_partitions;  // static_partitions only
    std::vector<TopicPartition> instance_partitions;

    Handle producer;
    Queue producer_queue;             // the producer's main queue: delivery reports, errors
    static constexpr std::size_t topic_handles_max = 4096;
    std::unordered_map<std::string, TopicHandle> topic_handles;  // by topic name; before `producer` dies
    std::atomic<bool> producer_fatal{false};
    std::string consumer_fatal;       // a consumer's fatal error: receive fails with it
    std::uint64_t next_record = 1;
    std::unordered_map<std::uint64_t, MessageId> records_in_flight;            // record -> id
    std::unordered_map<MessageId, std::uint32_t, MessageIdHash> ids_in_flight;  // id -> records
    std::vector<MessageId> confirmed_ready;
    std::vector<Undeliverable> undeliverable_ready;

    std::vector<std::unique_ptr<Consumer>> consumers;
    bool consuming = false;
    std::map<TopicPartition, PartitionProgress> progress;
    std::unordered_map<DeliveryTag, DeliveredRecord> delivered;
    DeliveryTag next_tag = 1;
    std::chrono::steady_clock::time_point last_hint{};

    int pipe_read = -1;
    int pipe_write = -1;
    std::atomic<bool> closed{false};
    bool closing = false;  // the destructor runs: revocations complete at once
    std::atomic<bool> wake_requested{false};
    AtomicStats stats;
};

}  // namespace choreo::kafka_transport
