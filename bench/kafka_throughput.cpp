// kafka_throughput — messages per second through the toolkit over Kafka, next to a raw librdkafka
// baseline measured in the same run, on the same cluster.
//
// The workload is N "deposit" envelopes (bench_common.h), each about 220 bytes, keyed by their
// correlation id (the partition key the toolkit gives an input), sent to the service "bank", so
// into the --partitions partitions of its service topic. The cluster is one in-process MockCluster
// (librdkafka's mock brokers on loopback TCP, --brokers-count of them) for the whole run, or a real
// one (--brokers). Every measurement writes to topics of its own (created before its clock starts),
// so a repeat never reads an earlier one's records.
//
//   raw-kafka       librdkafka's C API with the transport's client settings: an idempotent
//                   producer (acks=all) on a thread produces the same N records (same keys, same
//                   value bytes); the timed side is a consumer assigned every partition from its
//                   beginning (no group membership, no commits) that reads until it has N. Both
//                   connect before the clock starts. Timed from the first produce to the last
//                   record read.
//   toolkit-memory  a sending KafkaTransport ("teller/1", its own thread: offers all N, under
//   toolkit-sqlite  backpressure, and drains confirmations) → a Service "bank/1" on a
//                   KafkaTransport whose handler saves one state value per message, on a
//                   MemoryStore or a SqliteStore (FULL sync, batch 256): fetch → decode → dedup
//                   read → handler → commit (with the partition offsets) → ack. Both transports
//                   are opened before the clock starts. Timed until the last input is resolved
//                   (after its batch committed), as in zmq_throughput.
//
// Each run also prints when the first message arrived (raw: was read; toolkit: was resolved) and
// the rate of the N-1 after it: start-up waits of the clients (metadata, offsets) show in the
// first, not in the second. CPU is given for the timed thread and for the whole process (which
// holds the mock brokers and librdkafka's threads too) over the timed window.
//
// On the mock cluster every client of both sides gets fetch.wait.max.ms=5 (see Cluster), unless
// --set gives one. The program fails (exit 1) only when a side did not deliver or apply every
// message once, never on timing.
//
//   ./kafka_throughput                  # 50,000 messages, 3 repeats of each side, 3 mock brokers
//   ./kafka_throughput --quick          # a small N, one run each: the ctest smoke test
//   ./kafka_throughput --messages 200000 --partitions 16 --repeats 1 --only toolkit-memory  # profiler
//   ./kafka_throughput --brokers localhost:9092 --partitions 12              # a real cluster
#include <librdkafka/rdkafka.h>
#include <unistd.h>  // getpid

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <variant>

#include "bench_common.h"
#include "choreo/durability/memory_store.h"
#include "choreo/durability/sqlite_store.h"
#include "choreo/transport/kafka_mock.h"
#include "choreo/transport/kafka_transport.h"

namespace {

using namespace choreo_bench;
namespace kt = choreo::kafka_transport;

constexpr std::size_t batch_size = 256;
constexpr std::size_t messages_max = 10'000'000;
constexpr std::size_t repeats_max = 100;
constexpr std::int32_t partitions_max = 1'000;
Clock::duration run_timeout = std::chrono::minutes(5);  // per measurement; --quick: 1 minute

using Settings = std::vector<std::pair<std::string, std::string>>;

// The client settings of the transport (transport/kafka/src/kafka_transport.cpp, make_producer and
// make_consumers, with KafkaOptions' defaults), so the raw clients batch, partition, acknowledge
// and fetch as the toolkit's do. linger.ms, batch.size and the fetch settings are librdkafka's
// defaults on both sides (linger.ms 5 in 2.0.2).
const Settings raw_producer_settings = {
    {"enable.idempotence", "true"},  // implies acks=all
    {"acks", "all"},
    {"partitioner", "murmur2_random"},  // a key lands in the partition the toolkit's would
    {"queue.buffering.max.messages", "100000"},  // KafkaOptions::produce_queue_max
    {"message.max.bytes", std::to_string((1 << 20) + 4096)},
};
const Settings raw_consumer_settings = {
    {"enable.auto.commit", "false"},  // no commits
    {"enable.auto.offset.store", "false"},
    {"auto.offset.reset", "earliest"},
    {"enable.partition.eof", "false"},
    {"isolation.level", "read_committed"},
};
constexpr std::size_t consume_chunk = 256;  // records taken per call, as the transport drains

struct Options {
    bool quick = false;
    std::size_t messages = 50'000;
    std::size_t repeats = 3;
    std::string only{};  // empty: every side; else raw-kafka, toolkit-memory, toolkit-sqlite
    std::string dir{};
    std::string brokers{};       // a real cluster; empty: an in-process MockCluster
    int brokers_count = 3;       // of the MockCluster
    std::int32_t partitions = 6;  // of each measurement's topic (the service topic for the toolkit)
    std::int64_t batch_delay_us = -1;  // -1: ServiceOptions' default
    Settings settings{};  // --set NAME=VALUE: librdkafka settings for every client of both sides
};

std::optional<Options> parse_options(int argc, char** argv) {
    Options options;
    for (int index = 1; index < argc; index++) {
        const std::string flag = argv[index];
        if (flag == "--quick") {
            options.quick = true;
            options.messages = 2'000;
            options.repeats = 1;
            continue;
        }
        if (index + 1 >= argc) return std::nullopt;
        const std::string value = argv[++index];
        if (flag == "--messages") {
            options.messages = std::strtoull(value.c_str(), nullptr, 10);
        } else if (flag == "--repeats") {
            options.repeats = std::strtoull(value.c_str(), nullptr, 10);
        } else if (flag == "--only") {
            options.only = value;
        } else if (flag == "--dir") {
            options.dir = value;
        } else if (flag == "--brokers") {
            options.brokers = value;
        } else if (flag == "--brokers-count") {
            options.brokers_count = std::atoi(value.c_str());
        } else if (flag == "--partitions") {
            options.partitions = std::atoi(value.c_str());
        } else if (flag == "--batch-delay-us") {
            options.batch_delay_us = std::strtoll(value.c_str(), nullptr, 10);
        } else if (flag == "--set") {
            const std::size_t equals = value.find('=');
            if (equals == std::string::npos || equals == 0) return std::nullopt;
            options.settings.emplace_back(value.substr(0, equals), value.substr(equals + 1));
        } else {
            return std::nullopt;
        }
    }
    if (options.messages == 0 || options.messages > messages_max) return std::nullopt;
    if (options.repeats == 0 || options.repeats > repeats_max) return std::nullopt;
    if (options.brokers_count < 1 || options.brokers_count > 16) return std::nullopt;
    if (options.partitions < 1 || options.partitions > partitions_max) return std::nullopt;
    if (!options.only.empty() && options.only != "raw-kafka" && options.only != "toolkit-memory" &&
        options.only != "toolkit-sqlite") {
        return std::nullopt;
    }
    return options;
}

double process_cpu_seconds() {
    timespec now{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

// ---- librdkafka handles ----------------------------------------------------------------------

struct DestroyClient {
    void operator()(rd_kafka_t* client) const { rd_kafka_destroy(client); }
};
struct DestroyQueue {
    void operator()(rd_kafka_queue_t* queue) const { rd_kafka_queue_destroy(queue); }
};
struct DestroyPartitions {
    void operator()(rd_kafka_topic_partition_list_t* list) const { rd_kafka_topic_partition_list_destroy(list); }
};
struct DestroyEvent {
    void operator()(rd_kafka_event_t* event) const { rd_kafka_event_destroy(event); }
};
struct DestroyMessage {
    void operator()(rd_kafka_message_t* message) const { rd_kafka_message_destroy(message); }
};
using Client = std::unique_ptr<rd_kafka_t, DestroyClient>;
using Queue = std::unique_ptr<rd_kafka_queue_t, DestroyQueue>;
using Partitions = std::unique_ptr<rd_kafka_topic_partition_list_t, DestroyPartitions>;
using Event = std::unique_ptr<rd_kafka_event_t, DestroyEvent>;
using Message = std::unique_ptr<rd_kafka_message_t, DestroyMessage>;

// A client, or the setting librdkafka refused: `user` (--set), then `own`, which win, as in the
// transport. `prepare` sets callbacks on the conf.
std::variant<Client, std::string> make_client(rd_kafka_type_t type, const std::string& brokers, const Settings& user,
                                              const Settings& own,
                                              const std::function<void(rd_kafka_conf_t*)>& prepare = {}) {
    char error[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    Settings all = {{"log_level", "3"}};
    all.insert(all.end(), user.begin(), user.end());
    all.insert(all.end(), own.begin(), own.end());
    all.emplace_back("bootstrap.servers", brokers);
    for (const auto& [name, value] : all) {
        if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), error, sizeof error) != RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            return name + "=" + value + ": " + error;
        }
    }
    if (prepare) prepare(conf);
    rd_kafka_t* client = rd_kafka_new(type, conf, error, sizeof error);  // takes conf when it succeeds
    if (client == nullptr) {
        rd_kafka_conf_destroy(conf);
        return std::string("rd_kafka_new: ") + error;
    }
    return Client{client};
}

// ---- the cluster -----------------------------------------------------------------------------

// The MockCluster of the run, or the brokers of a real cluster; hands out fresh topic names.
class Cluster {
public:
    explicit Cluster(const Options& options) : settings_(options.settings) {
        if (options.brokers.empty()) {
            mock_ = std::make_unique<kt::MockCluster>(options.brokers_count);
            bootstraps_ = mock_->bootstraps();
            // A mock broker answers a fetch that found nothing only after fetch.wait.max.ms (500 by
            // default), even when records arrive meanwhile; a real broker answers when they
            // arrive. Both sides get a short wait, so neither stalls on an idle partition.
            const bool given = std::any_of(settings_.begin(), settings_.end(),
                                           [](const auto& setting) { return setting.first == "fetch.wait.max.ms"; });
            if (!given) settings_.insert(settings_.begin(), {"fetch.wait.max.ms", "5"});
        } else {
            bootstraps_ = options.brokers;
        }
    }

    const std::string& bootstraps() const { return bootstraps_; }
    const Settings& settings() const { return settings_; }
    std::string describe() const {
        if (mock_) return "MockCluster of " + std::to_string(mock_->broker_count()) + " brokers at " + bootstraps_;
        return "brokers " + bootstraps_;
    }

    // A topic prefix no earlier measurement (of this process, or of an earlier run against the
    // same real cluster) used.
    std::string fresh_prefix() {
        return "choreo-bench-" + std::to_string(::getpid()) + "-" + std::to_string(++measurements_);
    }

    std::optional<std::string> create_topic(const std::string& topic, std::int32_t partitions) {
        if (mock_) {
            const choreo::Status created = mock_->create_topic(topic, partitions);
            if (!created.ok()) return created.to_string();
            return std::nullopt;
        }
        return create_real_topic(topic, partitions);
    }

private:
    // CreateTopics through the admin API, replication the broker default.
    std::optional<std::string> create_real_topic(const std::string& topic, std::int32_t partitions) {
        auto made = make_client(RD_KAFKA_PRODUCER, bootstraps_, settings_, {});
        if (auto* failed = std::get_if<std::string>(&made)) return *failed;
        const Client admin = std::move(std::get<Client>(made));
        char error[512];
        rd_kafka_NewTopic_t* new_topic = rd_kafka_NewTopic_new(topic.c_str(), partitions, -1, error, sizeof error);
        if (new_topic == nullptr) return "topic " + topic + ": " + error;
        const Queue queue{rd_kafka_queue_new(admin.get())};
        rd_kafka_AdminOptions_t* admin_options = rd_kafka_AdminOptions_new(admin.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS);
        rd_kafka_AdminOptions_set_operation_timeout(admin_options, 10'000, error, sizeof error);
        rd_kafka_CreateTopics(admin.get(), &new_topic, 1, admin_options, queue.get());
        rd_kafka_AdminOptions_destroy(admin_options);
        rd_kafka_NewTopic_destroy(new_topic);
        const Event event{rd_kafka_queue_poll(queue.get(), 30'000)};
        if (!event) return "create topic " + topic + ": no answer";
        if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            return "create topic " + topic + ": " + rd_kafka_event_error_string(event.get());
        }
        std::size_t count = 0;
        const rd_kafka_topic_result_t** results =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event.get()), &count);
        for (std::size_t index = 0; index < count; index++) {
            const rd_kafka_resp_err_t code = rd_kafka_topic_result_error(results[index]);
            if (code != RD_KAFKA_RESP_ERR_NO_ERROR && code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                return "create topic " + topic + ": " + rd_kafka_err2str(code);
            }
        }
        return std::nullopt;
    }

    std::unique_ptr<kt::MockCluster> mock_;
    std::string bootstraps_;
    Settings settings_;
    std::size_t measurements_ = 0;
};

// The partition key of each message: its correlation id, as the toolkit keys an input.
std::vector<std::string> partition_keys(const Workload& workload) {
    std::vector<std::string> keys;
    keys.reserve(workload.ids.size());
    for (const choreo::MessageId& id : workload.ids) keys.push_back(id.to_string());  // make_workload's correlation
    return keys;
}

std::size_t total_bytes(const std::vector<choreo::Bytes>& all) {
    std::size_t bytes = 0;
    for (const choreo::Bytes& one : all) bytes += one.size();
    return bytes;
}

std::size_t total_bytes(const std::vector<std::string>& all) {
    std::size_t bytes = 0;
    for (const std::string& one : all) bytes += one.size();
    return bytes;
}

// Measurement plus what the whole process spent.
struct Timed {
    Measurement measurement;
    double process_cpu_seconds = 0;
};

// ---- raw Kafka -------------------------------------------------------------------------------

struct DeliveryCounts {
    std::atomic<std::size_t> delivered{0};
    std::atomic<std::size_t> failed{0};
    std::atomic<int> first_error{0};
};

void count_delivery(rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
    auto* counts = static_cast<DeliveryCounts*>(opaque);
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        counts->delivered++;
        return;
    }
    counts->failed++;
    int none = 0;
    counts->first_error.compare_exchange_strong(none, message->err);
}

// Produces every record (waiting while librdkafka's queue is full), then flushes.
std::string produce_all(rd_kafka_t* producer, const std::string& topic, const Workload& workload,
                        const std::vector<std::string>& keys) {
    for (std::size_t index = 0; index < workload.envelopes.size(); index++) {
        const choreo::Bytes& value = workload.envelopes[index];
        const std::string& key = keys[index];
        for (;;) {
            const rd_kafka_resp_err_t produced = rd_kafka_producev(
                producer, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(key.data(), key.size()),
                RD_KAFKA_V_VALUE(const_cast<std::uint8_t*>(value.data()), value.size()), RD_KAFKA_V_END);
            if (produced == RD_KAFKA_RESP_ERR_NO_ERROR) break;
            if (produced != RD_KAFKA_RESP_ERR__QUEUE_FULL) return std::string("produce: ") + rd_kafka_err2str(produced);
            rd_kafka_poll(producer, 1);  // serves delivery reports, which frees the queue
        }
        rd_kafka_poll(producer, 0);
    }
    const rd_kafka_resp_err_t flushed = rd_kafka_flush(producer, 60'000);
    if (flushed != RD_KAFKA_RESP_ERR_NO_ERROR) return std::string("flush: ") + rd_kafka_err2str(flushed);
    return {};
}

// Connects a client to the leaders of the topic's partitions before the clock starts (both sides
// of the toolkit connect in open(), before theirs) and learns where each partition begins.
std::string connect_to(rd_kafka_t* client, const std::string& topic, std::int32_t partitions,
                       std::vector<std::int64_t>& beginnings) {
    beginnings.clear();
    for (std::int32_t partition = 0; partition < partitions; partition++) {
        std::int64_t low = 0;
        std::int64_t high = 0;
        const rd_kafka_resp_err_t queried =
            rd_kafka_query_watermark_offsets(client, topic.c_str(), partition, &low, &high, 30'000);
        if (queried != RD_KAFKA_RESP_ERR_NO_ERROR) return std::string("watermarks: ") + rd_kafka_err2str(queried);
        if (high != low) return "topic " + topic + " is not empty";
        beginnings.push_back(low);
    }
    return {};
}

// Reads records from the consumer's queue, `consume_chunk` at a time, until it has `n` or the
// deadline passes; counts them and their bytes.
struct Consumed {
    std::size_t records = 0;
    Clock::time_point first{};  // when the first record was read
    std::size_t value_bytes = 0;
    std::size_t key_bytes = 0;
    std::string first_error{};
};

Consumed consume_all(rd_kafka_queue_t* queue, std::size_t n, Clock::time_point deadline) {
    Consumed consumed;
    std::array<rd_kafka_message_t*, consume_chunk> records{};
    while (consumed.records < n && Clock::now() < deadline) {
        const ssize_t count = rd_kafka_consume_batch_queue(queue, 100, records.data(), records.size());
        for (ssize_t index = 0; index < count; index++) {
            const Message record{records[static_cast<std::size_t>(index)]};
            if (record->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                // librdkafka retries; reported only if the records never all come
                if (consumed.first_error.empty()) consumed.first_error = rd_kafka_message_errstr(record.get());
                continue;
            }
            if (consumed.records == 0) consumed.first = Clock::now();
            consumed.value_bytes += record->len;
            consumed.key_bytes += record->key_len;
            consumed.records++;
        }
    }
    return consumed;
}

Timed run_raw_kafka(const Workload& workload, const std::vector<std::string>& keys, Cluster& cluster,
                    std::int32_t partitions) {
    const std::string topic = cluster.fresh_prefix() + ".raw";
    if (auto failed = cluster.create_topic(topic, partitions)) return {.measurement = {.error = *failed}};

    DeliveryCounts counts;
    auto made_producer =
        make_client(RD_KAFKA_PRODUCER, cluster.bootstraps(), cluster.settings(), raw_producer_settings,
                    [&](rd_kafka_conf_t* conf) {
                        rd_kafka_conf_set_dr_msg_cb(conf, count_delivery);
                        rd_kafka_conf_set_opaque(conf, &counts);
                    });
    if (auto* failed = std::get_if<std::string>(&made_producer)) return {.measurement = {.error = *failed}};
    const Client producer = std::move(std::get<Client>(made_producer));
    Settings consumer_settings = raw_consumer_settings;
    consumer_settings.emplace_back("group.id", topic);  // assign() needs one; the group is never joined
    auto made_consumer = make_client(RD_KAFKA_CONSUMER, cluster.bootstraps(), cluster.settings(), consumer_settings);
    if (auto* failed = std::get_if<std::string>(&made_consumer)) return {.measurement = {.error = *failed}};
    const Client consumer = std::move(std::get<Client>(made_consumer));
    rd_kafka_poll_set_consumer(consumer.get());
    const Queue queue{rd_kafka_queue_get_consumer(consumer.get())};

    std::vector<std::int64_t> beginnings;
    for (rd_kafka_t* client : {producer.get(), consumer.get()}) {
        if (std::string failed = connect_to(client, topic, partitions, beginnings); !failed.empty()) {
            return {.measurement = {.error = failed}};
        }
    }
    // From the beginning, given as the offset it is: assigned OFFSET_BEGINNING, librdkafka 2.0.2
    // asks for it with a ListOffsets request that, for a partition not yet joined to its leader's
    // broker thread, waits for a 500 ms retry timer.
    const Partitions assignment{rd_kafka_topic_partition_list_new(partitions)};
    for (std::int32_t partition = 0; partition < partitions; partition++) {
        rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), partition)->offset =
            beginnings[static_cast<std::size_t>(partition)];
    }
    if (const rd_kafka_resp_err_t assigned = rd_kafka_assign(consumer.get(), assignment.get()); assigned != 0) {
        return {.measurement = {.error = std::string("assign: ") + rd_kafka_err2str(assigned)}};
    }
    const std::size_t n = workload.envelopes.size();

    const double process_start = process_cpu_seconds();
    const Clock::time_point start = Clock::now();
    const double cpu_start = thread_cpu_seconds();
    std::string produce_error;
    std::thread producing{[&] {
        pthread_setname_np(pthread_self(), "raw-producer");  // for profilers
        produce_error = produce_all(producer.get(), topic, workload, keys);
    }};
    const Consumed consumed = consume_all(queue.get(), n, start + run_timeout);
    Timed timed;
    Measurement& measurement = timed.measurement;
    measurement.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    measurement.cpu_seconds = thread_cpu_seconds() - cpu_start;
    timed.process_cpu_seconds = process_cpu_seconds() - process_start;
    if (consumed.records > 0) measurement.first_seconds = std::chrono::duration<double>(consumed.first - start).count();
    producing.join();

    if (!produce_error.empty()) {
        measurement.error = produce_error;
    } else if (counts.delivered != n || counts.failed != 0) {
        measurement.error = "delivered " + std::to_string(counts.delivered.load()) + ", failed " +
                            std::to_string(counts.failed.load()) + " (" +
                            rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(counts.first_error.load())) + ")";
    } else if (consumed.records != n || consumed.value_bytes != total_bytes(workload.envelopes) ||
               consumed.key_bytes != total_bytes(keys)) {
        measurement.error = "consumed " + std::to_string(consumed.records) + " records, " +
                            std::to_string(consumed.value_bytes) + " value bytes, " +
                            std::to_string(consumed.key_bytes) + " key bytes" +
                            (consumed.first_error.empty() ? "" : "; consume: " + consumed.first_error);
    }
    rd_kafka_consumer_close(consumer.get());
    return timed;
}

// ---- the toolkit -----------------------------------------------------------------------------

// The topics of one toolkit measurement: the bank's service topic with the partitions the
// workload is spread over, and one partition for each of the rest.
std::optional<std::string> create_toolkit_topics(Cluster& cluster, const std::string& prefix, std::int32_t partitions) {
    const std::vector<std::pair<std::string, std::int32_t>> topics = {
        {kt::service_topic(prefix, bank_address().service()), partitions},
        {kt::instance_topic(prefix, bank_address()), 1},
        {kt::service_topic(prefix, teller_address().service()), 1},
        {kt::instance_topic(prefix, teller_address()), 1},
    };
    for (const auto& [topic, count] : topics) {
        if (auto failed = cluster.create_topic(topic, count)) return failed;
    }
    return std::nullopt;
}

choreo::Result<std::unique_ptr<kt::KafkaTransport>> open_endpoint(const Cluster& cluster, const std::string& prefix,
                                                                 const choreo::Address& self, choreo::Store* store) {
    kt::KafkaOptions options{.self = self, .brokers = cluster.bootstraps(), .prefix = prefix, .store = store};
    for (const auto& [name, value] : cluster.settings()) options.settings[name] = value;
    return kt::KafkaTransport::open(std::move(options));
}

std::string describe(const kt::KafkaStats& stats) {
    return "produced " + std::to_string(stats.produced) + ", confirmed " + std::to_string(stats.confirmed) +
           ", produce failed " + std::to_string(stats.produce_failed) + ", backpressure " +
           std::to_string(stats.backpressure) + ", consumed " + std::to_string(stats.consumed) + ", client errors " +
           std::to_string(stats.client_errors) + ", assignments " + std::to_string(stats.assignments);
}

// The teller: offers all N envelopes to the bank's service topic, as fast as backpressure lets
// it, and drains confirmations, until every message is confirmed or `stop` is set.
std::string send_all(kt::KafkaTransport& teller, const Workload& workload, const std::vector<std::string>& keys,
                     const std::atomic<bool>& stop) {
    const choreo::Address bank = bank_address().service_address();  // the service topic: its partitions
    std::vector<choreo::OutgoingMessage> messages;
    messages.reserve(workload.envelopes.size());
    for (std::size_t index = 0; index < workload.envelopes.size(); index++) {
        messages.push_back({workload.ids[index], bank, {}, keys[index], workload.envelopes[index]});
    }
    std::size_t offered = 0;
    std::size_t confirmed = 0;
    choreo::ReceiveBatch batch;
    while (!stop.load() && confirmed < messages.size()) {
        bool held_back = offered == messages.size();
        if (offered < messages.size()) {
            const std::size_t chunk = std::min<std::size_t>(4096, messages.size() - offered);
            choreo::Result<std::size_t> accepted = teller.send(std::span(messages).subspan(offered, chunk));
            if (!accepted.ok()) return "teller send: " + accepted.status().to_string();
            offered += *accepted;
            held_back = *accepted < chunk;
        }
        batch.clear();
        // Under backpressure (or with everything offered) wait for confirmations, as the runtime does.
        const choreo::Status received = teller.receive(batch, 0, held_back ? 1'000 : 0);
        if (!received.ok()) return "teller receive: " + received.to_string();
        if (!batch.undeliverable.empty()) return "undeliverable: " + batch.undeliverable.front().reason;
        confirmed += batch.confirmed.size();
    }
    return {};
}

std::int64_t batch_delay_us = -1;  // --batch-delay-us

Timed run_toolkit(const Workload& workload, const std::vector<std::string>& keys, Cluster& cluster,
                  std::int32_t partitions, choreo::Store& store) {
    const std::string prefix = cluster.fresh_prefix();
    if (auto failed = create_toolkit_topics(cluster, prefix, partitions)) return {.measurement = {.error = *failed}};
    auto bank = open_endpoint(cluster, prefix, bank_address(), &store);
    if (!bank.ok()) return {.measurement = {.error = "open bank: " + bank.status().to_string()}};
    auto teller = open_endpoint(cluster, prefix, teller_address(), nullptr);  // sends only
    if (!teller.ok()) return {.measurement = {.error = "open teller: " + teller.status().to_string()}};

    choreo::ServiceOptions options;
    options.name = bank_address().service();
    options.instance = bank_address().instance();
    options.batch_size_max = batch_size;
    options.step_workers_max = 0;
    if (batch_delay_us >= 0) options.batch_delay_us_max = batch_delay_us;
    choreo::Service service{options, **bank, store};
    service.on("deposit", [](choreo::Context& ctx, const Deposit& deposit) { ctx.save(deposit.account, deposit); });
    std::atomic<bool> stop{false};
    std::string send_error;
    const double process_start = process_cpu_seconds();
    std::thread sender{[&] {
        pthread_setname_np(pthread_self(), "teller");  // for profilers
        send_error = send_all(**teller, workload, keys, stop);
    }};
    Timed timed;
    timed.measurement = run_service(service, workload.ids.size(), run_timeout);
    timed.process_cpu_seconds = process_cpu_seconds() - process_start;
    stop = true;
    sender.join();
    Measurement& measurement = timed.measurement;
    if (measurement.error.empty() && !send_error.empty()) measurement.error = send_error;
    if (!measurement.error.empty()) {
        measurement.error += "; teller: " + describe((*teller)->stats()) + "; bank: " + describe((*bank)->stats());
    }
    return timed;
}

Timed run_toolkit_memory(const Workload& workload, const std::vector<std::string>& keys, Cluster& cluster,
                         std::int32_t partitions) {
    choreo::MemoryStore store;
    return run_toolkit(workload, keys, cluster, partitions, store);
}

Timed run_toolkit_sqlite(const Workload& workload, const std::vector<std::string>& keys, Cluster& cluster,
                         std::int32_t partitions, const fs::path& file) {
    Timed timed;
    {
        choreo::Result<std::unique_ptr<choreo::SqliteStore>> store = open_fresh_store(file);
        if (!store.ok()) return {.measurement = {.error = store.status().to_string()}};
        timed = run_toolkit(workload, keys, cluster, partitions, **store);
    }
    Measurement& measurement = timed.measurement;
    measurement.dedup_rows = count_rows(file, "dedup");
    measurement.state_rows = count_rows(file, "state");
    if (measurement.error.empty() && (measurement.dedup_rows != static_cast<std::int64_t>(workload.ids.size()) ||
                                      measurement.state_rows != static_cast<std::int64_t>(workload.ids.size()))) {
        measurement.error = "dedup rows " + std::to_string(measurement.dedup_rows) + ", state rows " +
                            std::to_string(measurement.state_rows);
    }
    remove_database(file);
    return timed;
}

// ---- the report ------------------------------------------------------------------------------

struct Side {
    std::string name;
    std::function<Timed()> run;
    std::vector<double> per_second{};  // N over the whole timed window
    std::vector<double> after_first{};  // the N-1 after the first, over the time after it
    std::vector<double> first_ms{};
};

// After the first message: what a run does once the clients are past their start-up waits.
double after_first_per_second(const Measurement& measurement, std::size_t n) {
    const double rest = measurement.seconds - measurement.first_seconds;
    if (n < 2 || measurement.first_seconds < 0 || rest <= 0) return 0;
    return static_cast<double>(n - 1) / rest;
}

void print_ratio(const char* label, const Side& toolkit, const Side& raw) {
    if (toolkit.per_second.empty() || raw.per_second.empty()) return;
    std::printf("%-28s %6.1f%%   after the first message: %6.1f%%\n", label,
                100 * median(toolkit.per_second) / median(raw.per_second),
                100 * median(toolkit.after_first) / median(raw.after_first));
}

// The mock cluster keeps about 5 MB of records per partition and drops the oldest beyond that, so
// a consumer that falls further behind silently skips records (auto.offset.reset) and the run
// could only time out. At start-up the toolkit's consumer may be behind by every record.
constexpr double mock_partition_bytes_max = 4.0 * 1024 * 1024;  // with a margin
constexpr std::size_t record_overhead_bytes = 30;               // per record in a batch, roughly

std::optional<std::string> check_mock_retention(const Options& options, const Workload& workload,
                                                const std::vector<std::string>& keys) {
    if (!options.brokers.empty()) return std::nullopt;
    const double bytes = static_cast<double>(total_bytes(workload.envelopes) + total_bytes(keys) +
                                             workload.envelopes.size() * record_overhead_bytes);
    const double per_partition = 1.1 * bytes / options.partitions;  // keys spread them about evenly
    if (per_partition <= mock_partition_bytes_max) return std::nullopt;
    const auto enough = static_cast<long>(std::ceil(1.1 * bytes / mock_partition_bytes_max));
    return "the mock cluster keeps about 5 MB per partition and drops older records; " +
           std::to_string(workload.envelopes.size()) + " messages need --partitions " + std::to_string(enough) +
           " or more (or fewer --messages)";
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const std::optional<Options> options = parse_options(argc, argv);
    if (!options) {
        std::fprintf(stderr,
                     "usage: %s [--quick] [--messages N] [--repeats R] "
                     "[--only raw-kafka|toolkit-memory|toolkit-sqlite] [--brokers HOST:PORT,... | --brokers-count B] "
                     "[--partitions P] [--set LIBRDKAFKA_SETTING=VALUE]... [--dir PATH] [--batch-delay-us US]\n",
                     argv[0]);
        return 2;
    }
    batch_delay_us = options->batch_delay_us;
    if (options->quick) run_timeout = std::chrono::minutes(1);
    const Workload workload = make_workload(options->messages, false);
    const std::vector<std::string> keys = partition_keys(workload);
    if (auto refused = check_mock_retention(*options, workload, keys)) {
        std::fprintf(stderr, "%s\n", refused->c_str());
        return 2;
    }
    const std::optional<fs::path> dir = make_dir(options->dir);
    if (!dir) return 2;
    const std::size_t n = workload.ids.size();
    const std::int32_t partitions = options->partitions;
    Cluster cluster{*options};
    std::printf("kafka_throughput: %zu messages of %zu bytes (keys of %zu), %d partitions, librdkafka %s, %s, "
                "SQLite %s, files in %s\n",
                n, workload.envelopes.front().size(), keys.front().size(), partitions, rd_kafka_version_str(),
                cluster.describe().c_str(), sqlite3_libversion(), dir->c_str());
    for (const auto& [name, value] : cluster.settings()) {
        std::printf("  every client of both sides: %s=%s\n", name.c_str(), value.c_str());
    }
    std::vector<Side> sides = {
        {"raw-kafka", [&] { return run_raw_kafka(workload, keys, cluster, partitions); }},
        {"toolkit-memory", [&] { return run_toolkit_memory(workload, keys, cluster, partitions); }},
        {"toolkit-sqlite", [&] { return run_toolkit_sqlite(workload, keys, cluster, partitions, *dir / "toolkit.db"); }},
    };
    bool ok = true;
    for (std::size_t repeat = 0; repeat < options->repeats; repeat++) {
        for (Side& side : sides) {
            if (!options->only.empty() && options->only != side.name) continue;
            const Timed timed = side.run();
            const Measurement& measurement = timed.measurement;
            if (!measurement.error.empty()) {
                std::printf("  %-15s FAILED: %s\n", side.name.c_str(), measurement.error.c_str());
                ok = false;
                continue;
            }
            side.per_second.push_back(measurement.steps_per_second(n));
            side.after_first.push_back(after_first_per_second(measurement, n));
            side.first_ms.push_back(1e3 * measurement.first_seconds);
            std::printf("  %-15s %9.0f msg/s  (first after %6.1f ms, then %9.0f msg/s)  cpu %5.2f us/msg "
                        "(timed thread), %5.2f us/msg (process)\n",
                        side.name.c_str(), side.per_second.back(), side.first_ms.back(), side.after_first.back(),
                        measurement.cpu_us_per_step(n), 1e6 * timed.process_cpu_seconds / static_cast<double>(n));
        }
    }
    std::printf("\nmedian of %zu run%s, %zu messages:\n", options->repeats, options->repeats == 1 ? "" : "s", n);
    for (const Side& side : sides) {
        if (side.per_second.empty()) continue;
        std::printf("  %-15s %9.0f msg/s  (first after %6.1f ms, then %9.0f msg/s)\n", side.name.c_str(),
                    median(side.per_second), median(side.first_ms), median(side.after_first));
    }
    print_ratio("toolkit-memory / raw-kafka:", sides[1], sides[0]);
    print_ratio("toolkit-sqlite / raw-kafka:", sides[2], sides[0]);
    if (options->dir.empty()) {
        std::error_code ignored;
        fs::remove_all(*dir, ignored);
    }
    if (!ok) std::printf("FAILED: a side did not deliver or apply every message once\n");
    return ok ? 0 : 1;
}
