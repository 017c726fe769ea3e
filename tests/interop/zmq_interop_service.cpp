// zmq_interop_service.cpp — the choreo side of the ZeroMQ interop test (zmq_interop.py).
//
// Runs one service, `echo/1`, on a ZmqTransport that binds the endpoint the directory file lists
// for it, with its data in an SQLite file under --data. Its one handler takes `ping {round}` and
// replies `pong {round}` to the sender's `from` address; it counts every application of a round
// in its own durable state (applied/<round> = old + 1), so an input applied twice shows as 2.
//
//   zmq_interop_service --data DIR --directory FILE [--lifetime-ms MS]
//
// Prints `ready <bound endpoint>` once the service runs. On SIGTERM (or SIGINT) it waits up to
// settle_wait_ms_max for every reply to be confirmed, stops, and prints one JSON line:
//   {"applied": N, "duplicates": N, "dead_lettered": N, "confirmed": N, "unsettled_sends": N,
//    "rounds": {"<round>": <applications>, ...}, "dead_letters": [{"reason", "detail", ...}],
//    "zmq": {...transport counters}}
// A peer that never sends the signal cannot leave it running: after --lifetime-ms (default
// 120 s, the ctest timeout) it reports anyway and exits 6.
//
// Exit status: 0 ok; 2 usage; 3 the directory, store or transport cannot open; 5 the service
// stopped with an error; 6 no signal came within --lifetime-ms.
#include <signal.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "choreo/assert.h"
#include "choreo/durability/sqlite_store.h"
#include "choreo/service.h"
#include "choreo/transport/zmq_transport.h"

namespace {

using choreo::zmq_transport::Directory;
using choreo::zmq_transport::ZmqTransport;

constexpr int rounds_max = 10'000;                // a ping's round must be in [0, rounds_max)
constexpr std::int64_t settle_wait_ms_max = 5000;  // for replies still waiting for their ack
constexpr std::size_t dead_letters_page_max = 100;
constexpr std::size_t dead_letters_max = 10'000;  // reported at most

struct Ping {
    int round = 0;
    MSGPACK_DEFINE_MAP(round);
};
struct Pong {
    int round = 0;
    MSGPACK_DEFINE_MAP(round);
};

struct Arguments {
    std::string data;
    std::string directory;
    std::int64_t lifetime_ms = 120'000;
};

bool parse_arguments(int argc, char** argv, Arguments& out) {
    for (int index = 1; index + 1 < argc; index += 2) {
        const std::string flag = argv[index];
        const char* value = argv[index + 1];
        if (flag == "--data") {
            out.data = value;
        } else if (flag == "--directory") {
            out.directory = value;
        } else if (flag == "--lifetime-ms") {
            out.lifetime_ms = std::atoll(value);
        } else {
            return false;
        }
    }
    return argc % 2 == 1 && !out.data.empty() && !out.directory.empty() && out.lifetime_ms > 0;
}

std::string applied_key(int round) { return "applied/" + std::to_string(round); }

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

// Blocks SIGTERM and SIGINT in this thread and every thread it starts later, so that only the
// sigtimedwait() in wait_for_signal() sees them: no handler runs on some other thread mid-call.
sigset_t block_stop_signals() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    CHOREO_ASSERT(pthread_sigmask(SIG_BLOCK, &signals, nullptr) == 0);
    return signals;
}

// True when a stop signal came before the lifetime ran out.
bool wait_for_signal(const sigset_t& signals, std::int64_t lifetime_ms) {
    CHOREO_ASSERT(lifetime_ms > 0);
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds{lifetime_ms};
    while (true) {  // bounded by `end`
        const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(end - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        timespec timeout{static_cast<time_t>(left.count() / 1'000'000'000), static_cast<long>(left.count() % 1'000'000'000)};
        if (sigtimedwait(&signals, nullptr, &timeout) > 0) return true;
        // EINTR (another signal) or EAGAIN (timeout): the loop checks the time again.
    }
}

// Replies still unconfirmed at stop would be retransmitted by a next run, not lost, but the test
// wants to see the outbox settle, so give the client's acks a bounded moment to arrive.
void wait_for_replies_confirmed(const choreo::Service& svc) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds{settle_wait_ms_max};
    while (std::chrono::steady_clock::now() < end) {
        const choreo::ServiceStats stats = svc.stats();
        if (stats.confirmed >= stats.applied) return;  // one pong per applied ping
        std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
}

std::string rounds_json(choreo::Store& store, const std::set<int>& rounds) {
    std::string out = "{";
    for (const int round : rounds) {
        choreo::Result<std::optional<choreo::Bytes>> stored = store.load_state(applied_key(round));
        CHOREO_ASSERT(stored.ok());
        // 0: the handler ran but its batch never committed (the service then stopped with an error).
        const int applications = stored->has_value() ? choreo::unpack<int>(**stored).value() : 0;
        if (out.size() > 1) out += ", ";
        out += json_string(std::to_string(round)) + ": " + std::to_string(applications);
    }
    return out + "}";
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

std::string summary_json(const choreo::Service& svc, std::size_t unsettled_sends, const ZmqTransport& transport,
                         choreo::Store& store, const std::set<int>& rounds) {
    const choreo::ServiceStats stats = svc.stats();
    const choreo::zmq_transport::ZmqStats zmq = transport.stats();
    return "{\"applied\": " + std::to_string(stats.applied) + ", \"duplicates\": " + std::to_string(stats.duplicates) +
           ", \"dead_lettered\": " + std::to_string(stats.dead_lettered) +
           ", \"confirmed\": " + std::to_string(stats.confirmed) + ", \"unsettled_sends\": " + std::to_string(unsettled_sends) +
           ", \"rounds\": " + rounds_json(store, rounds) + ", \"dead_letters\": " + dead_letters_json(store) +
           ", \"zmq\": {\"envelopes_received\": " + std::to_string(zmq.envelopes_received) +
           ", \"malformed\": " + std::to_string(zmq.malformed) + ", \"acks_sent\": " + std::to_string(zmq.acks_sent) +
           ", \"acks_received\": " + std::to_string(zmq.acks_received) + "}}";
}

std::unique_ptr<ZmqTransport> open_transport(const std::string& directory_file) {
    choreo::Result<std::shared_ptr<Directory>> directory = Directory::load(directory_file);
    if (!directory.ok()) {
        std::fprintf(stderr, "cannot load %s: %s\n", directory_file.c_str(), directory.status().to_string().c_str());
        return nullptr;
    }
    auto opened = ZmqTransport::open({.self = choreo::Address::unicast("echo", "1"), .directory = *directory});
    if (!opened.ok()) {
        std::fprintf(stderr, "cannot open the transport: %s\n", opened.status().to_string().c_str());
        return nullptr;
    }
    return std::move(opened).value();
}

std::unique_ptr<choreo::SqliteStore> open_store(const std::string& data_directory) {
    std::error_code error;
    std::filesystem::create_directories(data_directory, error);
    const std::string file = (std::filesystem::path(data_directory) / "echo-1.db").string();
    auto opened = choreo::SqliteStore::open({.path = file});
    if (!opened.ok()) {
        std::fprintf(stderr, "cannot open %s: %s\n", file.c_str(), opened.status().to_string().c_str());
        return nullptr;
    }
    return std::move(opened).value();
}

}  // namespace

int main(int argc, char** argv) {
    Arguments arguments;
    if (!parse_arguments(argc, argv, arguments)) {
        std::fprintf(stderr, "usage: zmq_interop_service --data DIR --directory FILE [--lifetime-ms MS]\n");
        return 2;
    }
    const sigset_t stop_signals = block_stop_signals();  // before any thread starts
    std::unique_ptr<ZmqTransport> transport = open_transport(arguments.directory);
    std::unique_ptr<choreo::SqliteStore> store = open_store(arguments.data);
    if (!transport || !store) return 3;

    choreo::Service svc{{.name = "echo", .instance = "1"}, *transport, *store};
    std::set<int> rounds_seen;  // runtime thread; read after it is joined
    svc.on("ping", [&rounds_seen](choreo::Context& ctx, const Ping& ping) {
        if (ping.round < 0 || ping.round >= rounds_max) ctx.reject("round_out_of_range", std::to_string(ping.round));
        const int applications = ctx.load<int>(applied_key(ping.round)).value_or(0) + 1;
        ctx.save(applied_key(ping.round), applications);
        ctx.reply("pong", Pong{ping.round});
        rounds_seen.insert(ping.round);
    });

    choreo::Status ended;
    std::thread runner{[&] { ended = svc.run(); }};
    std::printf("ready %s\n", transport->bound_endpoint().c_str());
    std::fflush(stdout);

    const bool signalled = wait_for_signal(stop_signals, arguments.lifetime_ms);
    wait_for_replies_confirmed(svc);
    svc.stop();
    runner.join();
    if (!ended.ok()) {
        std::fprintf(stderr, "the service stopped with an error: %s\n", ended.to_string().c_str());
        return 5;
    }
    std::printf("%s\n", summary_json(svc, svc.unsettled_sends(), *transport, *store, rounds_seen).c_str());
    std::fflush(stdout);
    return signalled ? 0 : 6;
}
