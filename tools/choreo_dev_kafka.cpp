// choreo-dev-kafka — a Kafka cluster in one process, for development and tests.
//
//   choreo-dev-kafka --brokers-count 3 --service pong:4 --topic choreo.ping.1
//   bootstrap: 127.0.0.1:39017,127.0.0.1:41223,127.0.0.1:35531
//
// Runs librdkafka's mock cluster (choreo::kafka_transport::MockCluster): brokers on loopback TCP
// that speak the Kafka protocol, so the Kafka transport, kcat and any other client can use them.
// Nothing is written to disk; every topic and record is gone when the program ends. The first
// line on stdout is the bootstrap address; it is printed (and --bootstrap-file written) only once
// every topic asked for exists, so a script may start its clients as soon as it reads it. The
// program runs until SIGINT or SIGTERM and then exits 0.
//
// The mock cluster does not answer CreateTopics (admin) requests, so topics that clients would
// create for themselves must be asked for here (docs/kafka.md).
#include <signal.h>
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "choreo/address.h"
#include "choreo/assert.h"
#include "choreo/transport/kafka_mock.h"
#include "choreo/transport/kafka_transport.h"

namespace {

namespace kt = choreo::kafka_transport;

constexpr int brokers_count_max = 16;            // what MockCluster accepts
constexpr std::int32_t partitions_max = 10'000;  // per topic; far more than a development run needs
constexpr std::size_t topic_name_bytes_max = 249;  // Kafka's own limit
constexpr std::size_t topics_max = 1'000;

constexpr const char* usage_text =
    "usage: choreo-dev-kafka [--brokers-count N] [--topic NAME[:PARTITIONS]]...\n"
    "                        [--service NAME[:PARTITIONS]]... [--prefix PREFIX]\n"
    "                        [--bootstrap-file PATH]\n"
    "\n"
    "Runs an in-memory Kafka cluster (librdkafka's mock brokers) on loopback until SIGINT or\n"
    "SIGTERM. Prints \"bootstrap: ADDRESSES\" as its first line once the topics exist.\n"
    "\n"
    "  --brokers-count N          brokers in the cluster, 1 to 16 (default 1)\n"
    "  --topic NAME[:PARTITIONS]  create topic NAME (default 1 partition); repeatable\n"
    "  --service NAME[:PARTITIONS]\n"
    "                             create the service topic <prefix>.NAME; repeatable\n"
    "  --prefix PREFIX            topic prefix for --service (default \"choreo\")\n"
    "  --bootstrap-file PATH      also write the bootstrap addresses (alone, one line) to PATH;\n"
    "                             removed again at exit\n"
    "  --help                     this text\n"
    "\n"
    "Exit status: 0 after SIGINT/SIGTERM, 1 when the cluster cannot be set up, 2 for bad arguments.\n";

struct TopicRequest {
    std::string name;             // a topic name, or a service name until resolved
    std::int32_t partitions = 1;
};

struct Arguments {
    int brokers_count = 1;
    std::string prefix = "choreo";
    std::vector<TopicRequest> topics;
    std::vector<TopicRequest> services;
    std::string bootstrap_file;
};

[[noreturn]] void exit_usage_error(const std::string& message) {
    std::fprintf(stderr, "choreo-dev-kafka: %s\n(choreo-dev-kafka --help lists the arguments)\n", message.c_str());
    std::exit(2);
}

// Kafka's rule for topic names: letters, digits, '.', '_', '-', at most 249 bytes, not "." or "..".
bool valid_topic_name(std::string_view name) {
    if (name.empty() || name.size() > topic_name_bytes_max) return false;
    if (name == "." || name == "..") return false;
    for (const char c : name) {
        const bool letter_or_digit = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!letter_or_digit && c != '.' && c != '_' && c != '-') return false;
    }
    return true;
}

// A whole decimal number in [low, high], or nothing.
std::optional<std::int64_t> parse_bounded(std::string_view text, std::int64_t low, std::int64_t high) {
    CHOREO_ASSERT(low <= high);
    std::int64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    if (value < low || value > high) return std::nullopt;
    return value;
}

// "NAME" or "NAME:PARTITIONS". Names are checked by the caller (a topic and a service differ).
TopicRequest parse_topic_request(const std::string& flag, std::string_view text) {
    const std::size_t colon = text.find(':');
    TopicRequest request{.name = std::string(text.substr(0, colon))};
    if (request.name.empty()) exit_usage_error(flag + " needs a name: '" + std::string(text) + "'");
    if (colon == std::string_view::npos) return request;
    const auto partitions = parse_bounded(text.substr(colon + 1), 1, partitions_max);
    if (!partitions) {
        exit_usage_error(flag + " " + std::string(text) + ": partitions must be a number from 1 to " +
                         std::to_string(partitions_max));
    }
    request.partitions = static_cast<std::int32_t>(*partitions);
    CHOREO_ASSERT(request.partitions >= 1);
    return request;
}

void add_topic(Arguments& arguments, const std::string& text) {
    TopicRequest request = parse_topic_request("--topic", text);
    if (!valid_topic_name(request.name)) {
        exit_usage_error("--topic " + text + ": a topic name has 1 to 249 letters, digits, '.', '_' or '-'");
    }
    arguments.topics.push_back(std::move(request));
}

void add_service(Arguments& arguments, const std::string& text) {
    TopicRequest request = parse_topic_request("--service", text);
    if (!choreo::Address::valid_name(request.name)) {
        exit_usage_error("--service " + text + ": a service name has 1 to 64 letters, digits, '.', '_' or '-'");
    }
    arguments.services.push_back(std::move(request));
}

void set_brokers_count(Arguments& arguments, const std::string& text) {
    const auto count = parse_bounded(text, 1, brokers_count_max);
    if (!count) exit_usage_error("--brokers-count " + text + ": must be a number from 1 to 16");
    arguments.brokers_count = static_cast<int>(*count);
}

void set_prefix(Arguments& arguments, const std::string& text) {
    if (!valid_topic_name(text)) exit_usage_error("--prefix '" + text + "': use letters, digits, '.', '_' or '-'");
    arguments.prefix = text;
}

void set_bootstrap_file(Arguments& arguments, const std::string& text) {
    if (text.empty()) exit_usage_error("--bootstrap-file needs a path");
    arguments.bootstrap_file = text;
}

Arguments parse_arguments(int argc, char** argv) {
    CHOREO_ASSERT(argc >= 1);
    Arguments arguments;
    for (int index = 1; index < argc; index++) {
        const std::string flag = argv[index];
        if (flag == "--help" || flag == "-h") {
            std::fputs(usage_text, stdout);
            std::exit(0);
        }
        if (flag != "--brokers-count" && flag != "--topic" && flag != "--service" && flag != "--prefix" &&
            flag != "--bootstrap-file") {
            exit_usage_error("unknown argument '" + flag + "'");
        }
        if (index + 1 >= argc) exit_usage_error(flag + " needs a value");
        const std::string value = argv[++index];
        if (flag == "--brokers-count") set_brokers_count(arguments, value);
        else if (flag == "--topic") add_topic(arguments, value);
        else if (flag == "--service") add_service(arguments, value);
        else if (flag == "--prefix") set_prefix(arguments, value);
        else set_bootstrap_file(arguments, value);
    }
    return arguments;
}

// The topics to create: --topic ones, then each --service's `<prefix>.<service>`. The same topic
// twice is refused: with two partition counts one of them would be silently ignored.
std::vector<TopicRequest> resolve_topics(const Arguments& arguments) {
    std::vector<TopicRequest> topics = arguments.topics;
    for (const TopicRequest& service : arguments.services) {
        topics.push_back({.name = kt::service_topic(arguments.prefix, service.name), .partitions = service.partitions});
    }
    if (topics.size() > topics_max) exit_usage_error("at most " + std::to_string(topics_max) + " topics");
    std::set<std::string> seen;
    for (const TopicRequest& topic : topics) {
        if (!valid_topic_name(topic.name)) exit_usage_error("topic name '" + topic.name + "' is not valid for Kafka");
        if (!seen.insert(topic.name).second) exit_usage_error("topic " + topic.name + " is asked for twice");
    }
    CHOREO_ASSERT(seen.size() == topics.size());
    return topics;
}

// Blocks SIGINT and SIGTERM in this thread, before the cluster starts its threads (they inherit
// the mask), so the signals stay pending for sigwait in main instead of hitting a broker thread.
sigset_t block_stop_signals() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    const int blocked = pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    CHOREO_ASSERT(blocked == 0);
    return signals;
}

bool create_topics(kt::MockCluster& cluster, const std::vector<TopicRequest>& topics) {
    for (const TopicRequest& topic : topics) {
        CHOREO_ASSERT(topic.partitions >= 1);
        const choreo::Status created = cluster.create_topic(topic.name, topic.partitions);
        if (!created.ok()) {
            std::fprintf(stderr, "choreo-dev-kafka: %s\n", created.to_string().c_str());
            return false;
        }
    }
    return true;
}

// Written to a temporary name and renamed, so a script polling for the file never reads half of it.
bool write_bootstrap_file(const std::string& path, const std::string& bootstraps) {
    CHOREO_ASSERT(!path.empty());
    CHOREO_ASSERT(!bootstraps.empty());
    const std::string temporary = path + ".tmp." + std::to_string(::getpid());
    {
        std::ofstream file{temporary, std::ios::trunc};
        file << bootstraps << '\n';
        file.close();
        if (!file) {
            std::fprintf(stderr, "choreo-dev-kafka: cannot write %s\n", temporary.c_str());
            return false;
        }
    }
    std::error_code error;
    std::filesystem::rename(temporary, path, error);
    if (error) {
        std::fprintf(stderr, "choreo-dev-kafka: cannot write %s: %s\n", path.c_str(), error.message().c_str());
        std::filesystem::remove(temporary, error);
        return false;
    }
    return true;
}

void announce(const kt::MockCluster& cluster, const std::vector<TopicRequest>& topics) {
    std::printf("bootstrap: %s\n", cluster.bootstraps().c_str());
    for (const TopicRequest& topic : topics) {
        std::printf("topic: %s (%d partition%s)\n", topic.name.c_str(), static_cast<int>(topic.partitions),
                    topic.partitions == 1 ? "" : "s");
    }
    std::fflush(stdout);
}

int wait_for_stop_signal(const sigset_t& signals) {
    int received = 0;
    const int waited = sigwait(&signals, &received);  // fails only for an invalid set
    CHOREO_ASSERT(waited == 0);
    CHOREO_ASSERT(received == SIGINT || received == SIGTERM);
    return received;
}

}  // namespace

int main(int argc, char** argv) {
    const Arguments arguments = parse_arguments(argc, argv);
    const std::vector<TopicRequest> topics = resolve_topics(arguments);
    const sigset_t stop_signals = block_stop_signals();
    kt::MockCluster cluster{arguments.brokers_count};
    CHOREO_ASSERT(cluster.broker_count() == arguments.brokers_count);
    if (!create_topics(cluster, topics)) return 1;
    if (!arguments.bootstrap_file.empty() && !write_bootstrap_file(arguments.bootstrap_file, cluster.bootstraps())) {
        return 1;
    }
    announce(cluster, topics);
    const int received = wait_for_stop_signal(stop_signals);
    std::fprintf(stderr, "choreo-dev-kafka: %s, stopping\n", received == SIGINT ? "SIGINT" : "SIGTERM");
    if (!arguments.bootstrap_file.empty()) {
        std::error_code ignored;  // already gone is fine: it only has to stop pointing at a dead cluster
        std::filesystem::remove(arguments.bootstrap_file, ignored);
    }
    return 0;
}
