// kafka_consume.cpp — receives: assignment from stored offsets, deliveries, acknowledgements and
// offset commits to Kafka (hints only: the store's positions are the truth, design §4.1).
#include <algorithm>
#include <string>

#include "choreo/assert.h"
#include "kafka_impl.h"

namespace choreo::kafka_transport {

// Where to start reading a partition: the next offset the store committed with its effects. If it
// has none (no store, or it never consumed this partition), the group's offset in Kafka, which is
// only ever committed after a store commit, so it is never ahead of what some store applied; and
// with neither, the beginning (auto.offset.reset=earliest): messages sent before the first start
// are kept for it.
Result<std::int64_t> KafkaTransport::Impl::start_offset(const TopicPartition& partition) {
    if (options.store == nullptr) return std::int64_t{RD_KAFKA_OFFSET_STORED};
    Result<std::optional<std::int64_t>> stored = options.store->consumed_position(stream_name(partition));
    if (!stored.ok()) return stored.status();
    return stored.value().value_or(RD_KAFKA_OFFSET_STORED);
}

Status KafkaTransport::Impl::assign_static(Consumer& consumer, const std::vector<TopicPartition>& partitions) {
    PartitionList list{rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()))};
    for (const TopicPartition& partition : partitions) {
        Result<std::int64_t> offset = start_offset(partition);
        if (!offset.ok()) return offset.status();
        rd_kafka_topic_partition_list_add(list.get(), partition.topic.c_str(), partition.partition)->offset =
            offset.value();
        progress[partition].consumer = &consumer;
    }
    const rd_kafka_resp_err_t error = rd_kafka_assign(consumer.handle.get(), list.get());
    if (error != RD_KAFKA_RESP_ERR_NO_ERROR) return transient_error("kafka_assign", rd_kafka_err2str(error));
    stats.assignments += partitions.size();
    return Status{};
}

// On the runtime thread, at the first receive: the store is read where the runtime reads it.
Status KafkaTransport::Impl::start_consuming() {
    for (auto& consumer : consumers) {
        if (consumer->subscribed) {
            PartitionList topics{rd_kafka_topic_partition_list_new(1)};
            rd_kafka_topic_partition_list_add(topics.get(), service_topic_name.c_str(), RD_KAFKA_PARTITION_UA);
            const rd_kafka_resp_err_t error = rd_kafka_subscribe(consumer->handle.get(), topics.get());
            if (error != RD_KAFKA_RESP_ERR_NO_ERROR) return transient_error("kafka_subscribe", rd_kafka_err2str(error));
            continue;
        }
        std::vector<TopicPartition> partitions = instance_partitions;
        if (options.assignment == Assignment::static_partitions) {
            partitions.insert(partitions.end(), static_service_partitions.begin(), static_service_partitions.end());
        }
        CHOREO_RETURN_IF_ERROR(assign_static(*consumer, partitions));
    }
    consuming = true;
    last_hint = std::chrono::steady_clock::now();
    return Status{};
}

Consumer* KafkaTransport::Impl::consumer_of(rd_kafka_t* handle) {
    for (auto& consumer : consumers) {
        if (consumer->handle.get() == handle) return consumer.get();
    }
    CHOREO_UNREACHABLE();  // a rebalance for a consumer this endpoint does not have
}

// ---- rebalances (dynamic_group only; called inside a drain, on the runtime thread) -----------

void KafkaTransport::Impl::on_rebalance(rd_kafka_t* handle, rd_kafka_resp_err_t error,
                                        rd_kafka_topic_partition_list_t* partitions) {
    if (error == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        on_assign(handle, partitions);
    } else {
        on_revoke(handle, partitions);
    }
}

// Seeks every new partition to the offset the shared store committed with its effects.
void KafkaTransport::Impl::on_assign(rd_kafka_t* handle, rd_kafka_topic_partition_list_t* partitions) {
    for (int index = 0; index < partitions->cnt; index++) {
        rd_kafka_topic_partition_t& entry = partitions->elems[index];
        const TopicPartition partition{entry.topic, entry.partition};
        Result<std::int64_t> offset = start_offset(partition);
        // A store that cannot answer now: the group's Kafka offset, never ahead of the store's.
        entry.offset = offset.ok() ? offset.value() : RD_KAFKA_OFFSET_STORED;
        progress[partition].consumer = consumer_of(handle);
    }
    rd_kafka_assign(handle, partitions);
    stats.assignments += static_cast<std::uint64_t>(partitions->cnt);
}

namespace {

std::set<TopicPartition> partitions_in(const rd_kafka_topic_partition_list_t& list) {
    std::set<TopicPartition> partitions;
    for (int index = 0; index < list.cnt; index++) partitions.insert({list.elems[index].topic, list.elems[index].partition});
    return partitions;
}

}  // namespace

bool KafkaTransport::Impl::unacknowledged_in(const std::set<TopicPartition>& partitions) const {
    return std::any_of(partitions.begin(), partitions.end(), [&](const TopicPartition& partition) {
        auto found = progress.find(partition);
        return found != progress.end() && !found->second.outstanding.empty();
    });
}

// The batch in flight is finished and committed first: while the runtime holds deliveries from
// these partitions unacknowledged (it calls receive several times per batch, and acknowledges
// after its commit), the revocation waits, the consumer hands out nothing more, and the group's
// rebalance waits for this member. It completes at a later receive once they are acknowledged, or
// after revoke_wait_ms (inputs the runtime keeps for handler retries): those are then left to the
// next owner, and the shared store's dedup table decides who applies each (never both).
void KafkaTransport::Impl::on_revoke(rd_kafka_t* handle, rd_kafka_topic_partition_list_t* partitions) {
    Consumer& consumer = *consumer_of(handle);
    if (!closing && !rd_kafka_assignment_lost(handle) && unacknowledged_in(partitions_in(*partitions))) {
        consumer.pending_revoke.reset(rd_kafka_topic_partition_list_copy(partitions));
        consumer.revoke_deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(options.revoke_wait_ms);
        return;
    }
    finish_revoke(consumer, *partitions);
}

void KafkaTransport::Impl::finish_revoke(Consumer& consumer, const rd_kafka_topic_partition_list_t& partitions) {
    const std::set<TopicPartition> revoked = partitions_in(partitions);
    // A lost assignment (this member was evicted) cannot commit: another member owns them now.
    if (!rd_kafka_assignment_lost(consumer.handle.get())) commit_hints_of(consumer, HintCommit::bounded, &revoked);
    std::erase_if(delivered, [&](const auto& entry) { return revoked.count(entry.second.partition) != 0; });
    for (const TopicPartition& partition : revoked) progress.erase(partition);
    rd_kafka_assign(consumer.handle.get(), nullptr);
    stats.revocations += revoked.size();
}

// True while a revocation still waits: the consumer is not drained meanwhile.
bool KafkaTransport::Impl::revocation_waits(Consumer& consumer) {
    if (!consumer.pending_revoke) return false;
    const bool acknowledged = !unacknowledged_in(partitions_in(*consumer.pending_revoke));
    if (!acknowledged && std::chrono::steady_clock::now() < consumer.revoke_deadline && !closing) return true;
    PartitionList pending = std::move(consumer.pending_revoke);
    finish_revoke(consumer, *pending);
    return false;
}

// ---- deliveries ------------------------------------------------------------------------------

void KafkaTransport::Impl::take_record(const rd_kafka_message_t& record, ReceiveBatch& out) {
    if (record.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        stats.client_errors++;  // broker errors: librdkafka retries the fetch itself
        return;
    }
    const TopicPartition partition{rd_kafka_topic_name(record.rkt), record.partition};
    auto owned = progress.find(partition);
    if (owned == progress.end()) return;  // prefetched before a revocation
    const DeliveryTag tag = next_tag++;
    const auto* payload = static_cast<const std::uint8_t*>(record.payload);
    Delivery delivery{tag, Bytes(payload, payload + record.len), StreamPosition{stream_name(partition), record.offset}};
    out.deliveries.push_back(std::move(delivery));
    owned->second.outstanding.insert(record.offset);
    delivered.emplace(tag, DeliveredRecord{partition, record.offset});
    stats.consumed++;
}

// One record at a time (rd_kafka_consumer_poll): librdkafka 2.0's batch API
// (rd_kafka_consume_batch_queue) has known issues with pause, resume, seek and rebalances (its
// release notes; fixed in part in 2.1), and Debian 12 ships 2.0.2.
std::size_t KafkaTransport::Impl::drain(Consumer& consumer, ReceiveBatch& out, std::size_t room) {
    std::size_t taken = 0;
    consumer.maybe_more = false;
    while (taken < room) {
        rd_kafka_message_t* record = rd_kafka_consumer_poll(consumer.handle.get(), 0);
        if (record == nullptr) return taken;
        take_record(*record, out);
        rd_kafka_message_destroy(record);
        taken++;
    }
    consumer.maybe_more = true;
    return taken;
}

Status KafkaTransport::Impl::receive(ReceiveBatch& out, std::size_t deliveries_max, std::int64_t timeout_us) {
    if (closed) return closed_error();
    if (!consuming) CHOREO_RETURN_IF_ERROR(start_consuming());
    const std::size_t deliveries_before = out.deliveries.size();
    const std::size_t confirmations_before = out.confirmed.size() + out.undeliverable.size();
    auto gather = [&] {
        drain_pipe();  // first: an event after this is seen by the next wait
        serve_producer(out);
        for (auto& consumer : consumers) {
            // With no room the consumer queue is left alone: rebalances and errors are served with
            // the next deliveries (rd_kafka_poll must not serve a consumer queue: it drops records).
            const std::size_t room = deliveries_max - (out.deliveries.size() - deliveries_before);
            if (room > 0 && !revocation_waits(*consumer)) drain(*consumer, out, room);
        }
        return out.deliveries.size() > deliveries_before ||
               out.confirmed.size() + out.undeliverable.size() > confirmations_before;
    };
    bool got = gather();
    // Wait until something arrives, wake() or close(), or the time is up. An event may bring
    // nothing for the runtime (a rebalance, a log line): then wait again for what is left.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(timeout_us);
    while (!got && !closed && !wake_requested.exchange(false)) {
        const bool more = deliveries_max > 0 &&
                          std::any_of(consumers.begin(), consumers.end(), [](const auto& c) { return c->maybe_more; });
        auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
        if (more || left.count() <= 0) break;
        for (const auto& consumer : consumers) {  // a waiting revocation is checked again in time
            if (consumer->pending_revoke) left = std::min(left, std::chrono::microseconds(10'000));
        }
        wait_for_event(left.count());
        got = gather();
    }
    commit_hints(HintCommit::background);
    if (!consumer_fatal.empty()) return precondition_error("kafka_consumer_fatal", consumer_fatal);
    if (closed && !got) return closed_error();
    return Status{};
}

// ---- acknowledgements and hints --------------------------------------------------------------

void KafkaTransport::Impl::acknowledge(std::span<const DeliveryTag> tags) {
    for (DeliveryTag tag : tags) {
        auto found = delivered.find(tag);
        if (found == delivered.end()) continue;  // unknown, or from a revoked partition
        auto owned = progress.find(found->second.partition);
        if (owned != progress.end()) {
            owned->second.outstanding.erase(found->second.offset);
            owned->second.acknowledged_next = std::max(owned->second.acknowledged_next, found->second.offset + 1);
        }
        delivered.erase(found);
    }
}

void KafkaTransport::Impl::commit_hints(HintCommit how) {
    const auto now = std::chrono::steady_clock::now();
    if (how == HintCommit::background && now - last_hint < std::chrono::milliseconds(options.commit_hint_interval_ms)) {
        return;
    }
    last_hint = now;
    for (auto& consumer : consumers) commit_hints_of(*consumer, how, nullptr);
}

// Commits to Kafka, for the partitions this consumer reads, the offset below which everything
// was acknowledged (after the runtime's commit). Failures are ignored: it is a hint.
//   background: asynchronous, at most every commit_hint_interval_ms (a failed one is sent again
//               only once the hint moves on);
//   bounded:    waits up to hint_commit_wait_ms (a revocation); `hinted` moves only on success;
//   final:      bounded, and sent even if an earlier commit of the same hint may have failed.
// The wait is bounded because a broker may be down: a hint is not worth a hung shutdown.
void KafkaTransport::Impl::commit_hints_of(Consumer& consumer, HintCommit how, const std::set<TopicPartition>* only) {
    PartitionList list{rd_kafka_topic_partition_list_new(4)};
    std::vector<std::pair<PartitionProgress*, std::int64_t>> advanced;
    for (auto& [partition, state] : progress) {
        if (state.consumer != &consumer || (only != nullptr && only->count(partition) == 0)) continue;
        const std::int64_t hint = state.hint();
        if (hint < 0 || (hint <= state.hinted && how != HintCommit::final)) continue;
        rd_kafka_topic_partition_list_add(list.get(), partition.topic.c_str(), partition.partition)->offset = hint;
        advanced.emplace_back(&state, hint);
    }
    if (list->cnt == 0) return;
    stats.commit_hints++;
    if (how == HintCommit::background) {
        rd_kafka_commit(consumer.handle.get(), list.get(), 1);
        for (auto& [state, hint] : advanced) state->hinted = hint;
        return;
    }
    Queue replies{rd_kafka_queue_new(consumer.handle.get())};
    rd_kafka_commit_queue(consumer.handle.get(), list.get(), replies.get(), nullptr, nullptr);
    rd_kafka_event_t* reply = rd_kafka_queue_poll(replies.get(), hint_commit_wait_ms);
    const bool stored = reply != nullptr && rd_kafka_event_error(reply) == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (reply != nullptr) rd_kafka_event_destroy(reply);
    if (!stored) return;
    for (auto& [state, hint] : advanced) state->hinted = hint;
}

}  // namespace choreo::kafka_transport
