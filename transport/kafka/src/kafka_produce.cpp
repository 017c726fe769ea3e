// kafka_produce.cpp — sends: records into topics, delivery reports into confirmations.
#include <cstdint>
#include <string>

#include "choreo/assert.h"
#include "kafka_impl.h"

namespace choreo::kafka_transport {

namespace {

void* record_opaque(std::uint64_t record) { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(record)); }
std::uint64_t record_of(const rd_kafka_message_t& report) {
    return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(report._private));
}

// Errors after which sending the same record again can never succeed.
bool refused_for_good(rd_kafka_resp_err_t error) {
    return error == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || error == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE ||
           error == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

}  // namespace

Result<std::size_t> KafkaTransport::Impl::send(std::span<const OutgoingMessage> batch) {
    restart_producer_if_fatal();
    std::size_t accepted = 0;
    for (const OutgoingMessage& message : batch) {
        if (offer(message) == Offer::backpressure) {
            stats.backpressure++;
            break;
        }
        accepted++;
    }
    return accepted;
}

// Accepted means produced, refused for good (reported as undeliverable), or already in flight: a
// retransmission of an id librdkafka still holds adds nothing, its delivery report confirms it.
KafkaTransport::Impl::Offer KafkaTransport::Impl::offer(const OutgoingMessage& message) {
    if (message.bytes.size() > options.message_bytes_max) {
        stats.refused_too_large++;
        undeliverable_ready.push_back({message.id, "message_too_large",
                                       std::to_string(message.bytes.size()) + " bytes, message_bytes_max " +
                                           std::to_string(options.message_bytes_max)});
        return Offer::accepted;
    }
    if (ids_in_flight.count(message.id) != 0) return Offer::accepted;
    rd_kafka_topic_t* topic = topic_handle(message.to);
    // The same key for every retransmission: it lands in the partition the same instance owns.
    const std::string key = message.key.empty() ? message.id.to_string() : message.key;
    const std::uint64_t record = next_record;
    const rd_kafka_resp_err_t error = rd_kafka_producev(
        producer.get(), RD_KAFKA_V_RKT(topic), RD_KAFKA_V_KEY(key.data(), key.size()),
        RD_KAFKA_V_VALUE(const_cast<std::uint8_t*>(message.bytes.data()), message.bytes.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(record_opaque(record)), RD_KAFKA_V_END);
    if (error == RD_KAFKA_RESP_ERR__QUEUE_FULL || error == RD_KAFKA_RESP_ERR__FATAL) return Offer::backpressure;
    if (refused_for_good(error)) {
        stats.refused_too_large++;
        undeliverable_ready.push_back({message.id, "message_too_large", rd_kafka_err2str(error)});
        return Offer::accepted;
    }
    if (error != RD_KAFKA_RESP_ERR_NO_ERROR) {
        stats.produce_failed++;  // e.g. a topic the cluster says does not exist: the outbox retries
        return Offer::accepted;
    }
    next_record++;
    records_in_flight.emplace(record, message.id);
    ids_in_flight[message.id]++;
    stats.produced++;
    return Offer::accepted;
}

// One librdkafka topic handle per destination, made on first use. Making it asks the cluster for
// the topic's partitions at once; a record produced by topic name to a topic this producer has
// not seen waits for librdkafka's 1-second topic scan instead (measured: ~1 s before the first
// delivery report, against ~7 ms).
rd_kafka_topic_t* KafkaTransport::Impl::topic_handle(const Address& to) {
    const std::string topic = to.is_unicast() ? instance_topic(options.prefix, to)
                                              : service_topic(options.prefix, to.service());
    auto found = topic_handles.find(topic);
    if (found != topic_handles.end()) return found->second.get();
    if (topic_handles.size() >= topic_handles_max) topic_handles.clear();  // a bound, not a cache policy
    rd_kafka_topic_t* handle = rd_kafka_topic_new(producer.get(), topic.c_str(), nullptr);
    CHOREO_ASSERT(handle != nullptr);  // only fails for an invalid name; names are checked addresses
    topic_handles.emplace(topic, TopicHandle{handle});
    return handle;
}

void KafkaTransport::Impl::on_delivery_report(const rd_kafka_message_t& report) {
    auto found = records_in_flight.find(record_of(report));
    if (found == records_in_flight.end()) return;  // from a producer since replaced
    const MessageId id = found->second;
    records_in_flight.erase(found);
    auto count = ids_in_flight.find(id);
    CHOREO_ASSERT(count != ids_in_flight.end() && count->second > 0);
    if (--count->second == 0) ids_in_flight.erase(count);
    if (report.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        stats.confirmed++;
        confirmed_ready.push_back(id);
    } else {
        // A broker's MESSAGE_TOO_LARGE refuses the whole batch the record went in, small records
        // too: only the producer's own size check (at produce, above) is final. A record truly too
        // large for the broker is retried and ends as send_attempts_exhausted.
        stats.produce_failed++;  // timed out, broker gone, purged, refused: not confirmed, so retransmitted
    }
}

void KafkaTransport::Impl::serve_producer(ReceiveBatch& out) {
    rd_kafka_poll(producer.get(), 0);  // delivery reports and errors, on this thread
    restart_producer_if_fatal();
    out.confirmed.insert(out.confirmed.end(), confirmed_ready.begin(), confirmed_ready.end());
    confirmed_ready.clear();
    out.undeliverable.insert(out.undeliverable.end(), std::make_move_iterator(undeliverable_ready.begin()),
                             std::make_move_iterator(undeliverable_ready.end()));
    undeliverable_ready.clear();
}

// An idempotent producer that hit a fatal error (e.g. its sequence numbers were lost by the
// broker) refuses everything from then on. A new one starts a new producer id; what the old one
// held is not confirmed and the outbox sends it again, which the receivers' dedup drops.
void KafkaTransport::Impl::restart_producer_if_fatal() {
    if (!producer_fatal) return;
    rd_kafka_purge(producer.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(producer.get(), 0);
    rd_kafka_queue_io_event_enable(producer_queue.get(), -1, nullptr, 0);
    producer_queue.reset();
    topic_handles.clear();
    producer.reset();
    records_in_flight.clear();
    ids_in_flight.clear();
    producer_fatal = false;
    stats.producer_restarts++;
    Status made = make_producer();
    CHOREO_ASSERT(made.ok());  // the same settings made one before
}

}  // namespace choreo::kafka_transport
