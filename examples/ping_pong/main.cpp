// ping_pong — two services exchanging messages in one process, printing a short trace.
//
// "ping" sends ping #1 to "pong"; "pong" replies; each pong makes ping send the next ping, up to
// --rounds. Every handler's state and sends commit atomically with the input's dedup row. At the
// end one already-applied message is replayed byte for byte: the dedup table makes it a no-op.
//
// Each service keeps its data in its own SQLite file (--data DIR keeps them; --memory uses the
// in-memory store instead).
//
//   ./ping_pong [--rounds N] [--data DIR | --memory]
#include <atomic>
#include <chrono>
#include <mutex>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "common/example_store.h"
#include "choreo/service.h"
#include "choreo/transport/memory_transport.h"

namespace {

struct Ping {
    int round = 0;
    MSGPACK_DEFINE_MAP(round);
};
struct Pong {
    int round = 0;
    MSGPACK_DEFINE_MAP(round);
};

void print_event(const choreo::Address& who, const choreo::TraceEvent& event) {
    std::printf("  %-7s %-10s %-5s %s%s%s\n", who.to_string().c_str(),
                std::string(choreo::trace_kind_name(event.kind)).c_str(), event.message_kind.c_str(),
                event.id.to_string().substr(0, 13).c_str(), event.reason.empty() ? "" : "  reason=",
                event.reason.c_str());
}

template <typename Predicate>
void wait_until(Predicate done) {
    while (!done()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

int parse_rounds(int argc, char** argv) {
    int rounds = 3;
    for (int index = 1; index + 1 < argc; index++) {
        if (std::strcmp(argv[index], "--rounds") == 0) rounds = std::atoi(argv[index + 1]);
    }
    return rounds >= 1 && rounds <= 1000 ? rounds : 3;
}

}  // namespace

int main(int argc, char** argv) {
    const int rounds = parse_rounds(argc, argv);
    choreo::MemoryNetwork network;
    choreo::MemoryTransport ping_transport{network, choreo::Address::unicast("ping", "1")};
    choreo::MemoryTransport pong_transport{network, choreo::Address::unicast("pong", "1")};
    const example::DataDirectory data{argc, argv};
    std::unique_ptr<choreo::Store> ping_store = data.open("ping-1");
    std::unique_ptr<choreo::Store> pong_store = data.open("pong-1");
    auto served_so_far = [&] {  // a --data directory from an earlier run already counts some
        choreo::Result<std::optional<choreo::Bytes>> served = pong_store->load_state("served");
        return served.ok() && served->has_value() ? choreo::unpack<int>(**served).value() : 0;
    };
    const int served_before = served_so_far();
    choreo::Service ping{{.name = "ping"}, ping_transport, *ping_store};
    choreo::Service pong{{.name = "pong"}, pong_transport, *pong_store};

    std::atomic<int> pongs_seen{0};
    std::atomic<int> duplicates_seen{0};
    std::mutex first_ping_mutex;
    choreo::MessageId first_ping_id;
    pong.on("ping", [](choreo::Context& ctx, const Ping& ping_message) {
        const int served = ctx.load<int>("served").value_or(0) + 1;
        ctx.save("served", served);
        ctx.reply("pong", Pong{ping_message.round});
    });
    ping.on("pong", [rounds](choreo::Context& ctx, const Pong& pong_message) {
        if (pong_message.round < rounds) ctx.send("pong", "ping", Ping{pong_message.round + 1});
        ctx.save("last-round", pong_message.round);
    });
    ping.set_observer([&](const choreo::TraceEvent& event) {
        print_event(ping.address(), event);
        if (event.kind == choreo::TraceKind::originated) {
            std::lock_guard lock{first_ping_mutex};
            first_ping_id = event.id;
        }
        if (event.kind == choreo::TraceKind::applied) pongs_seen++;
    });
    pong.set_observer([&](const choreo::TraceEvent& event) {
        print_event(pong.address(), event);
        if (event.kind == choreo::TraceKind::duplicate) duplicates_seen++;
    });

    std::printf("ping_pong: %d rounds over the in-memory transport, %s\n", rounds, data.describe().c_str());
    std::thread ping_thread{[&] { ping.run().ignore(); }};
    std::thread pong_thread{[&] { pong.run().ignore(); }};
    if (!ping.post("pong", "ping", Ping{1}).ok()) return 1;
    wait_until([&] { return pongs_seen.load() == rounds; });

    // A lost ack makes a sender retransmit: replay ping #1 byte for byte from ping's outbox.
    choreo::MessageId replay_id;
    {
        std::lock_guard lock{first_ping_mutex};
        replay_id = first_ping_id;
    }
    choreo::Result<std::optional<choreo::OutboxRow>> row = ping_store->find_outbox(replay_id);
    if (!row.ok() || !row->has_value()) return 1;
    std::printf("replaying ping #1 (%s), byte for byte:\n", replay_id.to_string().c_str());
    choreo::MemoryTransport replayer{network, choreo::Address::unicast("replayer", "1")};
    const choreo::OutgoingMessage replay{replay_id, (*row)->to, (*row)->route, (*row)->key, (*row)->bytes};
    if (!replayer.send({&replay, 1}).ok()) return 1;
    wait_until([&] { return duplicates_seen.load() == 1; });

    ping.stop();
    pong.stop();
    ping_thread.join();
    pong_thread.join();
    const choreo::ServiceStats ping_stats = ping.stats();
    const choreo::ServiceStats pong_stats = pong.stats();
    const int served_count = served_so_far() - served_before;
    std::printf("pong served %d pings for %d rounds: the replay changed nothing\n", served_count, rounds);
    std::printf("ping: applied %llu, sends %llu, confirmed %llu; pong: applied %llu, duplicates %llu\n",
                static_cast<unsigned long long>(ping_stats.applied), static_cast<unsigned long long>(ping_stats.sends),
                static_cast<unsigned long long>(ping_stats.confirmed),
                static_cast<unsigned long long>(pong_stats.applied),
                static_cast<unsigned long long>(pong_stats.duplicates));
    return served_count == rounds && pong_stats.duplicates == 1 ? 0 : 1;
}
