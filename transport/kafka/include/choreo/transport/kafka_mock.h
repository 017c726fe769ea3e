// choreo/transport/kafka_mock.h — an in-process Kafka cluster for tests and development.
//
// Wraps librdkafka's mock cluster (rdkafka_mock.h): N brokers listening on loopback TCP that
// speak the real Kafka protocol (produce, fetch, idempotent producer, consumer groups, offset
// commits), so any Kafka client (the Kafka transport, kcat) can use it. Nothing is written to
// disk: the cluster lives as long as this object. `choreo-dev-kafka` runs one as a program.
//
//   choreo::kafka_transport::MockCluster cluster{3};
//   cluster.create_topic("choreo.orders", 12);
//   options.brokers = cluster.bootstraps();
//   cluster.set_broker_down(2);     // faults: see the methods below
//
// librdkafka marks the mock API experimental; it ships with Debian's librdkafka-dev 2.0.2.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "choreo/status.h"

namespace choreo::kafka_transport {

class MockCluster {
public:
    explicit MockCluster(int broker_count = 1);
    ~MockCluster();
    MockCluster(const MockCluster&) = delete;
    MockCluster& operator=(const MockCluster&) = delete;

    // "127.0.0.1:port,...": what bootstrap.servers takes.
    const std::string& bootstraps() const { return bootstraps_; }
    int broker_count() const { return broker_count_; }

    // Creates a topic (an existing one is left as it is). replication -1: min(3, brokers).
    Status create_topic(const std::string& topic, std::int32_t partitions, int replication = -1);

    // Faults (the next requests see them; librdkafka clients retry and recover):
    Status set_broker_down(std::int32_t broker_id);  // closes its connections, refuses new ones
    Status set_broker_up(std::int32_t broker_id);
    Status set_broker_rtt(std::int32_t broker_id, int rtt_ms);  // a slow broker
    Status set_partition_leader(const std::string& topic, std::int32_t partition, std::int32_t broker_id);
    // The next `count` requests of Kafka API `api_key` (e.g. 0 = Produce, 1 = Fetch,
    // 8 = OffsetCommit) fail with error code `error` (e.g. 7 = REQUEST_TIMED_OUT,
    // 6 = NOT_LEADER_FOR_PARTITION).
    void push_request_errors(std::int16_t api_key, std::size_t count, int error);

private:
    struct Handles;
    std::unique_ptr<Handles> handles_;
    std::string bootstraps_;
    int broker_count_ = 0;
};

}  // namespace choreo::kafka_transport
