// kafka_mock.cpp — MockCluster over librdkafka's rdkafka_mock.h.
#include "choreo/transport/kafka_mock.h"

#include <algorithm>
#include <string>
#include <vector>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "choreo/assert.h"

namespace choreo::kafka_transport {

// The mock cluster needs a client handle for its bookkeeping; it is never used to send.
struct MockCluster::Handles {
    rd_kafka_t* owner = nullptr;
    rd_kafka_mock_cluster_t* cluster = nullptr;
};

namespace {

Status mock_status(rd_kafka_resp_err_t error, const std::string& what) {
    if (error == RD_KAFKA_RESP_ERR_NO_ERROR) return Status{};
    return precondition_error("kafka_mock", what + ": " + rd_kafka_err2str(error));
}

}  // namespace

MockCluster::MockCluster(int broker_count) : handles_(std::make_unique<Handles>()), broker_count_(broker_count) {
    CHOREO_ASSERT(broker_count >= 1 && broker_count <= 16);
    char error[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    // A handle that connects nowhere: the mock cluster only borrows its threads and logger.
    CHOREO_ASSERT(rd_kafka_conf_set(conf, "log_level", "3", error, sizeof error) == RD_KAFKA_CONF_OK);
    handles_->owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
    CHOREO_ASSERT(handles_->owner != nullptr);
    handles_->cluster = rd_kafka_mock_cluster_new(handles_->owner, broker_count);
    CHOREO_ASSERT(handles_->cluster != nullptr);
    bootstraps_ = rd_kafka_mock_cluster_bootstraps(handles_->cluster);
}

MockCluster::~MockCluster() {
    rd_kafka_mock_cluster_destroy(handles_->cluster);
    rd_kafka_destroy(handles_->owner);
}

Status MockCluster::create_topic(const std::string& topic, std::int32_t partitions, int replication) {
    CHOREO_ASSERT(partitions >= 1);
    if (replication < 1) replication = std::min(3, broker_count_);
    const rd_kafka_resp_err_t error =
        rd_kafka_mock_topic_create(handles_->cluster, topic.c_str(), partitions, replication);
    if (error == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) return Status{};
    return mock_status(error, "create topic " + topic);
}

Status MockCluster::set_broker_down(std::int32_t broker_id) {
    return mock_status(rd_kafka_mock_broker_set_down(handles_->cluster, broker_id), "broker down");
}

Status MockCluster::set_broker_up(std::int32_t broker_id) {
    return mock_status(rd_kafka_mock_broker_set_up(handles_->cluster, broker_id), "broker up");
}

Status MockCluster::set_broker_rtt(std::int32_t broker_id, int rtt_ms) {
    return mock_status(rd_kafka_mock_broker_set_rtt(handles_->cluster, broker_id, rtt_ms), "broker rtt");
}

Status MockCluster::set_partition_leader(const std::string& topic, std::int32_t partition, std::int32_t broker_id) {
    return mock_status(rd_kafka_mock_partition_set_leader(handles_->cluster, topic.c_str(), partition, broker_id),
                       "partition leader");
}

void MockCluster::push_request_errors(std::int16_t api_key, std::size_t count, int error) {
    std::vector<rd_kafka_resp_err_t> errors(count, static_cast<rd_kafka_resp_err_t>(error));
    rd_kafka_mock_push_request_errors_array(handles_->cluster, api_key, errors.size(), errors.data());
}

}  // namespace choreo::kafka_transport
