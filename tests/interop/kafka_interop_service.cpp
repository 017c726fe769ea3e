// kafka_interop_service.cpp — the choreo side of the Kafka interop test (kafka_interop.py).
//
// Runs one service, `ledger/1`, on a KafkaTransport (static assignment: it reads every partition
// of `choreo.ledger` and its instance topic `choreo.ledger.1`) with its data in an SQLite file
// under --data, so a second run on the same --data resumes from the offsets the first committed.
// Its one handler takes `deposit {round, amount}`: it counts the application of the round and adds
// the amount to a balance, both in one durable state value (so a record applied twice shows as
// 2, and in the balance), and replies `deposited {round}` to the sender's `from` (a deposit
// without `from` cannot be answered: the reply refuses it, dead letter `no_reply_address`).
//
//   kafka_interop_service --brokers HOST:PORT --data DIR [--lifetime-ms MS]
//
// The topics must exist (choreo-dev-kafka --service ledger:N --topic choreo.ledger.1 ...). Prints
// `ready ledger/1` once the service runs, then `progress {...}` whenever its counters change:
//   {"applied": N, "duplicates": N, "dead_lettered": N, "confirmed": N, "consumed": N}
// (service counters as of the last commit; `consumed`: records the transport handed over). On
// SIGTERM (or SIGINT) it waits up to settle_wait_ms_max for the broker to confirm every reply,
// stops, and prints one line `summary {...}`:
//   {"applied", "duplicates", "dead_lettered", "confirmed", "unsettled_sends",
//    "rounds": {"<round>": <applications>, ...}, "balance": N,
//    "dead_letters": [{"key", "reason", "detail", "attempts", "raw_size"}, ...],
//    "positions": {"choreo.ledger/0": <next offset or null>, ...}, "kafka": {...transport counters}}
// "rounds" and "balance" are the durable state, so they cover every run on this --data; the
// counters are this run's. After --lifetime-ms (default 120 s, the ctest timeout) without a
// signal it reports anyway and exits 6.
//
// Exit status: 0 ok; 2 usage; 3 the store or transport cannot open; 5 the service stopped with an
// error; 6 no signal came within --lifetime-ms.
#include <signal.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "choreo/assert.h"
#include "choreo/durability/sqlite_store.h"
#include "choreo/service.h"
#include "choreo/transport/kafka_transport.h"

namespace {

namespace kt = choreo::kafka_transport;

constexpr const char* service_name = "ledger";
constexpr const char* instance_name = "1";
constexpr const char* ledger_key = "ledger";
constexpr int rounds_max = 10'000;                 // a deposit's round must be in [0, rounds_max)
constexpr std::int64_t settle_wait_ms_max = 5000;   // for replies the broker has not confirmed yet
constexpr std::int64_t progress_poll_ms = 10;
constexpr std::size_t dead_letters_page_max = 100;
constexpr std::size_t dead_letters_max = 10'000;   // reported at most

struct Deposit {
    int round = 0;
    std::int64_t amount = 0;
    MSGPACK_DEFINE_MAP(round, amount);
};
struct Deposited {
    int round = 0;
    MSGPACK_DEFINE_MAP(round);
};
// The service's whole durable state: applications per round and the sum of applied amounts.
struct Ledger {
    std::map<int, int> applications;
    std::int64_t balance = 0;
    MSGPACK_DEFINE_MAP(applications, balance);
};

struct Arguments {
    std::string brokers;
    std::string data;
    std::int64_t lifetime_ms = 120'000;
};

bool parse_arguments(int argc, char** argv, Arguments& out) {
    for (int index = 1; index + 1 < argc; index += 2) {
        const std::string flag = argv[index];
        const char* value = argv[index + 1];
        if (flag == "--brokers") {
            out.brokers = value;
        } else if (flag == "--data") {
            out.data = value;
        } else if (flag == "--lifetime-ms") {
            out.lifetime_ms = std::atoll(value);
        } else {
            return false;
        }
    }
    return argc % 2 == 1 && !out.brokers.empty() && !out.data.empty() && out.lifetime_ms > 0;
}

// JSON string text; bytes outside printable ASCII become \u00XX (read as Latin-1), so any
// detail a decoder or the transport wrote keeps the line valid JSON.
std::string json_string(std::string_view text) {
    std::string out = "\"";
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (byte < 0x20 || byte >= 0x7f) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", byte);
            out += escaped;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

// Blocks SIGTERM and SIGINT in this thread and every thread it starts later (librdkafka's too),
// so that only the sigtimedwait() in the main loop sees them.
sigset_t block_stop_signals() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    CHOREO_ASSERT(pthread_sigmask(SIG_BLOCK, &signals, nullptr) == 0);
    return signals;
}

// True when a stop signal arrived within `wait_ms`.
bool signalled_within(const sigset_t& signals, std::int64_t wait_ms) {
    CHOREO_ASSERT(wait_ms > 0);
    timespec timeout{static_cast<time_t>(wait_ms / 1000), static_cast<long>((wait_ms % 1000) * 1'000'000)};
    return sigtimedwait(&signals, nullptr, &timeout) > 0;  // EAGAIN (timeout) or EINTR: not yet
}

std::string progress_json(const choreo::Service& svc, const kt::KafkaTransport& transport) {
    const choreo::ServiceStats stats = svc.stats();
    return "{\"applied\": " + std::to_string(stats.applied) + ", \"duplicates\": " + std::to_string(stats.duplicates) +
           ", \"dead_lettered\": " + std::to_string(stats.dead_lettered) +
           ", \"confirmed\": " + std::to_string(stats.confirmed) +
           ", \"consumed\": " + std::to_string(transport.stats().consumed) + "}";
}

// Prints a progress line whenever the counters change, until a stop signal or the lifetime ends.
// True when the signal came.
bool report_progress_until_signal(const sigset_t& signals, std::int64_t lifetime_ms, const choreo::Service& svc,
                                  const kt::KafkaTransport& transport) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds{lifetime_ms};
    std::string last;
    while (std::chrono::steady_clock::now() < end) {  // bounded by `end`
        std::string now = progress_json(svc, transport);
        if (now != last) {
            std::printf("progress %s\n", now.c_str());
            std::fflush(stdout);
            last = std::move(now);
        }
        if (signalled_within(signals, progress_poll_ms)) return true;
    }
    return false;
}

// Replies still unconfirmed at stop would be sent again by a next run, not lost, but the test
// wants to see the outbox settle, so give the broker's delivery reports a bounded moment. Every
// applied deposit sends one reply (one without `from` is refused), so confirmed catches up with
// applied.
void wait_for_replies_confirmed(const choreo::Service& svc) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds{settle_wait_ms_max};
    while (std::chrono::steady_clock::now() < end) {
        const choreo::ServiceStats stats = svc.stats();
        if (stats.confirmed >= stats.applied) return;
        std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
}

std::string ledger_json(choreo::Store& store) {
    choreo::Result<std::optional<choreo::Bytes>> stored = store.load_state(ledger_key);
    CHOREO_ASSERT(stored.ok());
    Ledger ledger;
    if (stored->has_value()) ledger = choreo::unpack<Ledger>(**stored).value();
    std::string rounds = "{";
    for (const auto& [round, applications] : ledger.applications) {
        if (rounds.size() > 1) rounds += ", ";
        rounds += json_string(std::to_string(round)) + ": " + std::to_string(applications);
    }
    return "\"rounds\": " + rounds + "}, \"balance\": " + std::to_string(ledger.balance);
}

std::string dead_letters_json(choreo::Store& store) {
    std::string out = "[";
    std::string after;
    std::size_t listed = 0;
    while (listed < dead_letters_max) {
        choreo::Result<std::vector<choreo::DeadLetter>> page = store.dead_letters(after, dead_letters_page_max);
        CHOREO_ASSERT(page.ok());
        for (const choreo::DeadLetter& letter : *page) {
            if (listed > 0) out += ", ";
            out += "{\"key\": " + json_string(letter.key) + ", \"reason\": " + json_string(letter.reason) +
                   ", \"detail\": " + json_string(letter.detail) + ", \"attempts\": " + std::to_string(letter.attempts) +
                   ", \"raw_size\": " + std::to_string(letter.raw_size) + "}";
            listed++;
        }
        if (page->size() < dead_letters_page_max) break;
        after = page->back().key;
    }
    return out + "]";
}

// The next offset the store committed for each stream this instance reads (null: none yet).
std::string positions_json(choreo::Store& store, const kt::KafkaTransport& transport) {
    const choreo::Address self = choreo::Address::unicast(service_name, instance_name);
    std::vector<std::string> streams;
    for (const std::int32_t partition : transport.assigned_partitions()) {
        streams.push_back(kt::service_topic("choreo", service_name) + "/" + std::to_string(partition));
    }
    streams.push_back(kt::instance_topic("choreo", self) + "/0");
    std::string out = "{";
    for (const std::string& stream : streams) {
        choreo::Result<std::optional<std::int64_t>> position = store.consumed_position(stream);
        CHOREO_ASSERT(position.ok());
        if (out.size() > 1) out += ", ";
        out += json_string(stream) + ": " + (position->has_value() ? std::to_string(**position) : "null");
    }
    return out + "}";
}

std::string summary_json(const choreo::Service& svc, std::size_t unsettled_sends, const kt::KafkaTransport& transport,
                         choreo::Store& store) {
    const choreo::ServiceStats stats = svc.stats();
    const kt::KafkaStats kafka = transport.stats();
    return "{\"applied\": " + std::to_string(stats.applied) + ", \"duplicates\": " + std::to_string(stats.duplicates) +
           ", \"dead_lettered\": " + std::to_string(stats.dead_lettered) +
           ", \"confirmed\": " + std::to_string(stats.confirmed) + ", \"unsettled_sends\": " + std::to_string(unsettled_sends) +
           ", " + ledger_json(store) + ", \"dead_letters\": " + dead_letters_json(store) +
           ", \"positions\": " + positions_json(store, transport) +
           ", \"kafka\": {\"produced\": " + std::to_string(kafka.produced) +
           ", \"confirmed\": " + std::to_string(kafka.confirmed) +
           ", \"produce_failed\": " + std::to_string(kafka.produce_failed) +
           ", \"consumed\": " + std::to_string(kafka.consumed) +
           ", \"assignments\": " + std::to_string(kafka.assignments) + "}}";
}

std::unique_ptr<choreo::SqliteStore> open_store(const std::string& data_directory) {
    std::error_code error;
    std::filesystem::create_directories(data_directory, error);
    const std::string file = (std::filesystem::path(data_directory) / "ledger-1.db").string();
    auto opened = choreo::SqliteStore::open({.path = file});
    if (!opened.ok()) {
        std::fprintf(stderr, "cannot open %s: %s\n", file.c_str(), opened.status().to_string().c_str());
        return nullptr;
    }
    return std::move(opened).value();
}

std::unique_ptr<kt::KafkaTransport> open_transport(const std::string& brokers, choreo::Store& store) {
    // The topics come from the dev broker: its mock brokers do not answer CreateTopics.
    auto opened = kt::KafkaTransport::open({.self = choreo::Address::unicast(service_name, instance_name),
                                            .brokers = brokers,
                                            .store = &store,
                                            .create_topic_partitions = 0,
                                            .commit_hint_interval_ms = 100});
    if (!opened.ok()) {
        std::fprintf(stderr, "cannot open the transport: %s\n", opened.status().to_string().c_str());
        return nullptr;
    }
    return std::move(opened).value();
}

}  // namespace

int main(int argc, char** argv) {
    Arguments arguments;
    if (!parse_arguments(argc, argv, arguments)) {
        std::fprintf(stderr, "usage: kafka_interop_service --brokers HOST:PORT --data DIR [--lifetime-ms MS]\n");
        return 2;
    }
    const sigset_t stop_signals = block_stop_signals();  // before any thread starts
    std::unique_ptr<choreo::SqliteStore> store = open_store(arguments.data);
    if (!store) return 3;
    std::unique_ptr<kt::KafkaTransport> transport = open_transport(arguments.brokers, *store);
    if (!transport) return 3;

    choreo::Service svc{{.name = service_name, .instance = instance_name}, *transport, *store};
    svc.on("deposit", [](choreo::Context& ctx, const Deposit& deposit) {
        if (deposit.round < 0 || deposit.round >= rounds_max) {
            ctx.reject("round_out_of_range", std::to_string(deposit.round));
        }
        Ledger ledger = ctx.load<Ledger>(ledger_key).value_or(Ledger{});
        ledger.applications[deposit.round]++;
        ledger.balance += deposit.amount;
        ctx.save(ledger_key, ledger);
        ctx.reply("deposited", Deposited{deposit.round});  // no `from`: refused, no_reply_address
    });

    choreo::Status ended;
    std::thread runner{[&] { ended = svc.run(); }};
    std::printf("ready %s/%s\n", service_name, instance_name);
    std::fflush(stdout);

    const bool signalled = report_progress_until_signal(stop_signals, arguments.lifetime_ms, svc, *transport);
    wait_for_replies_confirmed(svc);
    svc.stop();
    runner.join();
    if (!ended.ok()) {
        std::fprintf(stderr, "the service stopped with an error: %s\n", ended.to_string().c_str());
        return 5;
    }
    std::printf("summary %s\n", summary_json(svc, svc.unsettled_sends(), *transport, *store).c_str());
    std::fflush(stdout);
    return signalled ? 0 : 6;
}
