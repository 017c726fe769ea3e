// kafka_transport.cpp — KafkaTransport set-up: options, clients, topics, the wake pipe.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "choreo/assert.h"
#include "kafka_impl.h"

namespace choreo::kafka_transport {

namespace {

constexpr char pipe_payload = 'k';

Status options_error(const std::string& message) { return invalid_argument_error("invalid_options", message); }

Status check_options(const KafkaOptions& options) {
    if (!options.self.is_unicast()) return options_error("self must be a unicast address service/instance");
    if (options.brokers.empty()) return options_error("brokers (bootstrap.servers) is empty");
    if (!Address::valid_name(options.prefix)) return options_error("prefix '" + options.prefix + "' is not a valid name");
    if (options.instance_count < 1 || options.instance_index < 0 || options.instance_index >= options.instance_count) {
        return options_error("instance_index must be in [0, instance_count)");
    }
    for (std::int32_t partition : options.partitions) {
        if (partition < 0) return options_error("a partition number is negative");
    }
    if (options.message_bytes_max == 0 || options.produce_queue_max == 0) {
        return options_error("message_bytes_max and produce_queue_max must be positive");
    }
    if (options.assignment == Assignment::dynamic_group) {
        if (!options.partitions.empty()) return options_error("partitions are for static_partitions only");
        if (options.store == nullptr || !options.store->features().shared) {
            // Design §7: partitions that move between instances must meet one dedup table.
            return precondition_error("dynamic_group_needs_shared_store",
                                      "a consumer group with dynamic rebalancing needs a store every instance "
                                      "shares (Store::features().shared); with one store per instance use "
                                      "Assignment::static_partitions");
        }
    }
    return Status{};
}

void on_error(rd_kafka_t* handle, int error, const char* reason, void* opaque) {
    auto* impl = static_cast<KafkaTransport::Impl*>(opaque);
    (void)reason;
    impl->stats.client_errors++;  // librdkafka retries most errors (broker down, timeouts) by itself
    if (error != RD_KAFKA_RESP_ERR__FATAL) return;
    // Served by poll calls on the runtime thread, like every librdkafka callback here.
    if (rd_kafka_type(handle) == RD_KAFKA_PRODUCER) {
        impl->producer_fatal = true;  // a new producer is made before the next send
        return;
    }
    char text[512];
    rd_kafka_fatal_error(handle, text, sizeof text);
    impl->consumer_fatal = text;  // e.g. a fenced group.instance.id: receive stops the service
}

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* report, void* opaque) {
    static_cast<KafkaTransport::Impl*>(opaque)->on_delivery_report(*report);
}

void on_rebalance_event(rd_kafka_t* handle, rd_kafka_resp_err_t error, rd_kafka_topic_partition_list_t* partitions,
                        void* opaque) {
    static_cast<KafkaTransport::Impl*>(opaque)->on_rebalance(handle, error, partitions);
}

Status set(rd_kafka_conf_t* conf, const std::string& key, const std::string& value) {
    char error[512];
    if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), error, sizeof error) != RD_KAFKA_CONF_OK) {
        return invalid_argument_error("kafka_config", key + ": " + error);
    }
    return Status{};
}

}  // namespace

std::string service_topic(std::string_view prefix, std::string_view service) {
    return std::string(prefix) + "." + std::string(service);
}

std::string instance_topic(std::string_view prefix, const Address& unicast) {
    CHOREO_ASSERT(unicast.is_unicast());
    return service_topic(prefix, unicast.service()) + "." + unicast.instance();
}

std::string stream_name(const TopicPartition& partition) {
    return partition.topic + "/" + std::to_string(partition.partition);
}

std::int64_t PartitionProgress::hint() const {
    if (outstanding.empty()) return acknowledged_next;
    return acknowledged_next < 0 ? *outstanding.begin() : std::min(*outstanding.begin(), acknowledged_next);
}

KafkaStats AtomicStats::snapshot() const {
    return {produced.load(), confirmed.load(), produce_failed.load(), backpressure.load(),
            refused_too_large.load(), consumed.load(), client_errors.load(), assignments.load(),
            revocations.load(), commit_hints.load(), producer_restarts.load()};
}

// ---- clients ---------------------------------------------------------------------------------

// Defaults, then the user's settings, then what the transport's guarantees depend on.
Result<Handle> KafkaTransport::Impl::make_client(rd_kafka_type_t type, const std::map<std::string, std::string>& own) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    auto fail = [&](Status status) -> Result<Handle> {
        rd_kafka_conf_destroy(conf);
        return status;
    };
    // No topic is created as a side effect of asking for its metadata or producing to it: a
    // broker's auto-created topic has the broker's partition count, not the one asked for.
    const std::map<std::string, std::string> defaults = {
        {"log_level", "3"}, {"client.id", "choreo"}, {"allow.auto.create.topics", "false"}};
    using Settings = std::map<std::string, std::string>;
    for (const Settings* settings : std::initializer_list<const Settings*>{&defaults, &options.settings, &own}) {
        for (const auto& [key, value] : *settings) {
            if (Status status = set(conf, key, value); !status.ok()) return fail(status);
        }
    }
    if (Status status = set(conf, "bootstrap.servers", options.brokers); !status.ok()) return fail(status);
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_error_cb(conf, &on_error);
    if (type == RD_KAFKA_PRODUCER) rd_kafka_conf_set_dr_msg_cb(conf, &on_delivery);
    if (type == RD_KAFKA_CONSUMER) rd_kafka_conf_set_rebalance_cb(conf, &on_rebalance_event);  // subscribed ones only
    char error[512];
    rd_kafka_t* handle = rd_kafka_new(type, conf, error, sizeof error);  // takes conf on success
    if (handle == nullptr) return fail(invalid_argument_error("kafka_config", error));
    return Handle{handle};
}

Status KafkaTransport::Impl::make_producer() {
    Result<Handle> made = make_client(
        RD_KAFKA_PRODUCER,
        {{"enable.idempotence", "true"},  // implies acks=all and in-order retries without duplicates
         {"partitioner", "murmur2_random"},  // the Java client's: a key maps to the same partition
         {"queue.buffering.max.messages", std::to_string(options.produce_queue_max)},
         {"message.max.bytes", std::to_string(std::max<std::size_t>(options.message_bytes_max + 4096, 1'000'000))}});
    if (!made.ok()) return made.status();
    producer = std::move(made.value());
    producer_queue.reset(rd_kafka_queue_get_main(producer.get()));
    watch(producer_queue.get());
    return Status{};
}

// ---- topics ----------------------------------------------------------------------------------

// Asks the cluster to create a missing topic. Not every cluster answers (librdkafka's mock cluster
// does not know CreateTopics and creates topics when asked for their metadata instead), so no
// answer is not an error here: the metadata check after it decides.
Status KafkaTransport::Impl::create_topic(const std::string& topic, std::int32_t partitions) {
    char error[512];
    rd_kafka_NewTopic_t* request =
        rd_kafka_NewTopic_new(topic.c_str(), partitions, options.replication_factor, error, sizeof error);
    if (request == nullptr) return invalid_argument_error("topic_create_failed", topic + ": " + error);
    Queue results{rd_kafka_queue_new(producer.get())};
    rd_kafka_CreateTopics(producer.get(), &request, 1, nullptr, results.get());
    rd_kafka_NewTopic_destroy(request);
    rd_kafka_event_t* event = rd_kafka_queue_poll(results.get(), std::min(options.metadata_timeout_ms, 5'000));
    if (event == nullptr) return Status{};
    Status status;
    if (rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        status = precondition_error("topic_create_failed", topic + ": " + rd_kafka_event_error_string(event));
    }
    std::size_t count = 0;
    const rd_kafka_topic_result_t** created =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count);
    for (std::size_t index = 0; index < count; index++) {
        const rd_kafka_resp_err_t result = rd_kafka_topic_result_error(created[index]);
        if (result == RD_KAFKA_RESP_ERR_NO_ERROR || result == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) continue;
        status = precondition_error("topic_create_failed", topic + ": " + rd_kafka_err2str(result));
    }
    rd_kafka_event_destroy(event);
    return status;
}

Result<std::int32_t> KafkaTransport::Impl::ensure_topic(const std::string& topic, std::int32_t partitions) {
    Result<std::int32_t> count = partition_count(topic);
    if (count.ok() || count.status().reason() != "unknown_topic" || options.create_topic_partitions <= 0) return count;
    CHOREO_RETURN_IF_ERROR(create_topic(topic, partitions));
    return partition_count(topic);
}

Result<std::int32_t> KafkaTransport::Impl::partition_count(const std::string& topic) {
    rd_kafka_topic_t* handle = rd_kafka_topic_new(producer.get(), topic.c_str(), nullptr);
    const rd_kafka_metadata_t* metadata = nullptr;
    const rd_kafka_resp_err_t error =
        rd_kafka_metadata(producer.get(), 0, handle, &metadata, options.metadata_timeout_ms);
    rd_kafka_topic_destroy(handle);
    if (error != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return transient_error("kafka_unreachable", "metadata from " + options.brokers + ": " + rd_kafka_err2str(error));
    }
    Result<std::int32_t> count = not_found_error("unknown_topic", "topic " + topic + " does not exist; create it "
                                                 "or set create_topic_partitions");
    for (int index = 0; index < metadata->topic_cnt; index++) {
        const rd_kafka_metadata_topic_t& found = metadata->topics[index];
        if (topic == found.topic && found.err == RD_KAFKA_RESP_ERR_NO_ERROR && found.partition_cnt > 0) {
            count = found.partition_cnt;
        }
    }
    rd_kafka_metadata_destroy(metadata);
    return count;
}

Status KafkaTransport::Impl::plan_static_partitions() {
    Result<std::int32_t> instance_count = ensure_topic(instance_topic_name, 1);
    if (!instance_count.ok()) return instance_count.status();
    for (std::int32_t partition = 0; partition < instance_count.value(); partition++) {
        instance_partitions.push_back({instance_topic_name, partition});
    }
    Result<std::int32_t> service_count = ensure_topic(service_topic_name, options.create_topic_partitions);
    if (!service_count.ok()) return service_count.status();
    if (options.assignment == Assignment::dynamic_group) return Status{};
    std::vector<std::int32_t> chosen = options.partitions;
    if (chosen.empty()) {
        for (std::int32_t partition = options.instance_index; partition < service_count.value();
             partition += options.instance_count) {
            chosen.push_back(partition);
        }
    }
    for (std::int32_t partition : chosen) {
        if (partition >= service_count.value()) {
            return invalid_argument_error("no_such_partition", service_topic_name + " has " +
                                                                   std::to_string(service_count.value()) +
                                                                   " partitions, not " + std::to_string(partition + 1));
        }
        static_service_partitions.push_back({service_topic_name, partition});
    }
    return Status{};
}

Status KafkaTransport::Impl::make_consumers() {
    const std::string group = service_topic_name;
    auto add = [&](const std::string& group_id, bool subscribed) -> Status {
        Result<Handle> made = make_client(RD_KAFKA_CONSUMER, {{"group.id", group_id},
                                                              // on_assign/on_revoke use the eager protocol
                                                              {"partition.assignment.strategy", "range,roundrobin"},
                                                              {"enable.auto.commit", "false"},
                                                              {"enable.auto.offset.store", "false"},
                                                              {"auto.offset.reset", "earliest"},
                                                              {"enable.partition.eof", "false"},
                                                              {"isolation.level", "read_committed"}});
        if (!made.ok()) return made.status();
        auto consumer = std::make_unique<Consumer>();
        consumer->handle = std::move(made.value());
        consumer->subscribed = subscribed;
        rd_kafka_poll_set_consumer(consumer->handle.get());
        consumer->queue.reset(rd_kafka_queue_get_consumer(consumer->handle.get()));
        watch(consumer->queue.get());
        consumers.push_back(std::move(consumer));
        return Status{};
    };
    if (options.assignment == Assignment::static_partitions) return add(group, false);
    CHOREO_RETURN_IF_ERROR(add(group, true));
    return add(instance_topic_name, false);  // its own group: the service's group is balanced by Kafka
}

// ---- the wake pipe ---------------------------------------------------------------------------

Status KafkaTransport::Impl::make_wake_pipe() {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        return precondition_error("kafka_pipe", std::string("pipe2: ") + std::strerror(errno));
    }
    pipe_read = fds[0];
    pipe_write = fds[1];
    return Status{};
}

void KafkaTransport::Impl::watch(rd_kafka_queue_t* queue) {
    CHOREO_ASSERT(pipe_write >= 0);
    rd_kafka_queue_io_event_enable(queue, pipe_write, &pipe_payload, 1);
}

void KafkaTransport::Impl::signal_pipe() {
    const ssize_t written = ::write(pipe_write, &pipe_payload, 1);
    (void)written;  // a full pipe already wakes the reader
}

void KafkaTransport::Impl::drain_pipe() {
    char sink[256];
    while (::read(pipe_read, sink, sizeof sink) > 0) {
    }
}

void KafkaTransport::Impl::wait_for_event(std::int64_t timeout_us) {
    pollfd waiting{pipe_read, POLLIN, 0};
    const int timeout_ms = static_cast<int>(std::min<std::int64_t>((timeout_us + 999) / 1000, 60'000));
    ::poll(&waiting, 1, timeout_ms);
}

Status KafkaTransport::Impl::start() {
    CHOREO_RETURN_IF_ERROR(check_options(options));
    service_topic_name = service_topic(options.prefix, options.self.service());
    instance_topic_name = instance_topic(options.prefix, options.self);
    CHOREO_RETURN_IF_ERROR(make_wake_pipe());
    CHOREO_RETURN_IF_ERROR(make_producer());
    CHOREO_RETURN_IF_ERROR(plan_static_partitions());
    return make_consumers();
}

// Leaves the group (if subscribed) within consumer_close_wait_ms; with the brokers down it gives
// up and destroys the consumer without the goodbye, which Kafka notices by the session timeout.
void KafkaTransport::Impl::close_consumer(Consumer& consumer) {
    rd_kafka_queue_io_event_enable(consumer.queue.get(), -1, nullptr, 0);
    consumer.queue.reset();
    Queue events{rd_kafka_queue_new(consumer.handle.get())};
    rd_kafka_error_t* error = rd_kafka_consumer_close_queue(consumer.handle.get(), events.get());
    if (error != nullptr) rd_kafka_error_destroy(error);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(consumer_close_wait_ms);
    while (error == nullptr && !rd_kafka_consumer_closed(consumer.handle.get()) &&
           std::chrono::steady_clock::now() < deadline) {
        rd_kafka_event_t* event = rd_kafka_queue_poll(events.get(), 100);
        if (event == nullptr) continue;
        if (rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE) rd_kafka_assign(consumer.handle.get(), nullptr);
        rd_kafka_event_destroy(event);
    }
    const bool closed_cleanly = rd_kafka_consumer_closed(consumer.handle.get()) != 0;
    events.reset();
    rd_kafka_destroy_flags(consumer.handle.release(), closed_cleanly ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

KafkaTransport::Impl::~Impl() {
    closing = true;
    for (auto& consumer : consumers) {
        if (consumer->pending_revoke) revocation_waits(*consumer);  // completes it now
    }
    if (!consumers.empty() && consuming) commit_hints(HintCommit::final);
    for (auto& consumer : consumers) close_consumer(*consumer);
    consumers.clear();
    if (producer) {
        rd_kafka_queue_io_event_enable(producer_queue.get(), -1, nullptr, 0);
        producer_queue.reset();
        rd_kafka_flush(producer.get(), 2'000);  // what is left is retransmitted from the outbox
        topic_handles.clear();
        producer.reset();
    }
    if (pipe_read >= 0) ::close(pipe_read);
    if (pipe_write >= 0) ::close(pipe_write);
}

// ---- KafkaTransport --------------------------------------------------------------------------

Result<std::unique_ptr<KafkaTransport>> KafkaTransport::open(KafkaOptions options) {
    auto impl = std::make_unique<Impl>(std::move(options));
    CHOREO_RETURN_IF_ERROR(impl->start());
    return std::unique_ptr<KafkaTransport>(new KafkaTransport(std::move(impl)));
}

KafkaTransport::KafkaTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KafkaTransport::~KafkaTransport() = default;

Address KafkaTransport::local_address() const { return impl_->options.self; }
std::string KafkaTransport::route(const Address&) { return {}; }

Result<std::size_t> KafkaTransport::send(std::span<const OutgoingMessage> batch) {
    if (impl_->closed) return closed_error();
    return impl_->send(batch);
}

Status KafkaTransport::receive(ReceiveBatch& out, std::size_t deliveries_max, std::int64_t timeout_us) {
    return impl_->receive(out, deliveries_max, timeout_us);
}

Status KafkaTransport::acknowledge(std::span<const DeliveryTag> tags) {
    if (impl_->closed) return closed_error();
    impl_->acknowledge(tags);
    return Status{};
}

void KafkaTransport::wake() {
    impl_->wake_requested = true;
    impl_->signal_pipe();
}

void KafkaTransport::close() {
    impl_->closed = true;
    impl_->signal_pipe();
}

std::vector<std::int32_t> KafkaTransport::assigned_partitions() const {
    std::vector<std::int32_t> partitions;
    for (const auto& [partition, progress] : impl_->progress) {
        if (partition.topic == impl_->service_topic_name) partitions.push_back(partition.partition);
    }
    return partitions;
}

KafkaStats KafkaTransport::stats() const { return impl_->stats.snapshot(); }

}  // namespace choreo::kafka_transport
