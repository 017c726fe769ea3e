// zmq_ping_pong — ping and pong in two processes over ZeroMQ, each on its own SQLite file.
//
// Write a directory file that says where each instance listens (see docs/zmq.md):
//
//   ping/1  tcp://127.0.0.1:7101
//   pong/1  tcp://127.0.0.1:7102
//
// then start pong (it serves until Ctrl-C) and run ping (it plays --rounds and exits):
//
//   ./zmq_ping_pong --role pong --directory directory.conf --data /tmp/pong &
//   ./zmq_ping_pong --role ping --directory directory.conf --data /tmp/ping --rounds 10
//
// Start them in either order: ping's outbox keeps its first ping until pong is there to ack it.
// With CURVE, give each its keys (choreo-zmq-keygen) and the clients it admits:
//
//   --keys BASE            this instance's key pair, BASE.pub and BASE.key
//   --allow FILE           the public keys allowed to send to it, one per line
//
// and list each instance's public key in the directory (`key-file=BASE.pub`).
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "choreo/service.h"
#include "choreo/transport/zmq_transport.h"
#include "common/example_store.h"

namespace {

namespace zt = choreo::zmq_transport;

struct Ping {
    int round = 0;
    MSGPACK_DEFINE_MAP(round);
};
struct Pong {
    int round = 0;
    MSGPACK_DEFINE_MAP(round);
};

volatile std::sig_atomic_t interrupted = 0;
void on_interrupt(int) { interrupted = 1; }

struct Arguments {
    std::string role;
    std::string directory;
    std::string keys;
    std::string allow;
    int rounds = 5;
};

Arguments parse(int argc, char** argv) {
    Arguments arguments;
    for (int index = 1; index + 1 < argc; index++) {
        const std::string flag = argv[index];
        if (flag == "--role") arguments.role = argv[++index];
        else if (flag == "--directory") arguments.directory = argv[++index];
        else if (flag == "--keys") arguments.keys = argv[++index];
        else if (flag == "--allow") arguments.allow = argv[++index];
        else if (flag == "--rounds") arguments.rounds = std::atoi(argv[++index]);
    }
    if ((arguments.role != "ping" && arguments.role != "pong") || arguments.directory.empty() ||
        arguments.rounds < 1 || arguments.rounds > 100'000) {
        std::fprintf(stderr, "usage: zmq_ping_pong --role ping|pong --directory FILE [--rounds N] "
                             "[--data DIR | --memory] [--keys BASE --allow FILE]\n");
        std::exit(2);
    }
    return arguments;
}

template <typename T>
T or_exit(choreo::Result<T> result, const char* what) {
    if (!result.ok()) {
        std::fprintf(stderr, "zmq_ping_pong: %s: %s\n", what, result.status().to_string().c_str());
        std::exit(2);
    }
    return std::move(result).value();
}

std::optional<zt::CurveOptions> curve_options(const Arguments& arguments) {
    if (arguments.keys.empty()) return std::nullopt;
    zt::CurveOptions curve;
    curve.own = or_exit(zt::load_keypair(arguments.keys), "keys");
    if (!arguments.allow.empty()) curve.allowed_clients = or_exit(zt::load_allow_list(arguments.allow), "allow-list");
    return curve;
}

}  // namespace

int main(int argc, char** argv) {
    const Arguments arguments = parse(argc, argv);
    std::signal(SIGINT, on_interrupt);
    std::signal(SIGTERM, on_interrupt);
    const example::DataDirectory data{argc, argv};
    std::unique_ptr<choreo::Store> store = data.open(arguments.role + "-1");
    auto transport = or_exit(zt::ZmqTransport::open({.self = choreo::Address::unicast(arguments.role, "1"),
                                                     .directory = or_exit(zt::Directory::load(arguments.directory), "directory"),
                                                     .curve = curve_options(arguments)}),
                             "open");
    choreo::Service service{{.name = arguments.role}, *transport, *store};
    std::atomic<int> last_round{0};
    const int rounds = arguments.rounds;
    service.on("ping", [](choreo::Context& ctx, const Ping& ping) {
        ctx.save("served", ctx.load<int>("served").value_or(0) + 1);
        std::printf("pong: ping %d from %s\n", ping.round, ctx.message().from.to_string().c_str());
        ctx.reply("pong", Pong{ping.round});
    });
    service.on("pong", [&](choreo::Context& ctx, const Pong& pong) {
        std::printf("ping: pong %d\n", pong.round);
        if (pong.round < rounds) ctx.send("pong", "ping", Ping{pong.round + 1});
        last_round = pong.round;
    });
    std::printf("zmq_ping_pong: %s on %s, %s\n", arguments.role.c_str(), transport->bound_endpoint().c_str(),
                data.describe().c_str());
    std::fflush(stdout);
    std::thread runner{[&] { service.run().ignore(); }};
    if (arguments.role == "ping" && !service.post("pong", "ping", Ping{1}).ok()) return 1;
    while (interrupted == 0 && !(arguments.role == "ping" && last_round.load() == rounds)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    // Give the last acks a moment to leave before the sockets close.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    service.stop();
    runner.join();
    const choreo::ServiceStats stats = service.stats();
    std::printf("zmq_ping_pong: %s applied %llu, duplicates %llu, sends %llu, confirmed %llu\n",
                arguments.role.c_str(), static_cast<unsigned long long>(stats.applied),
                static_cast<unsigned long long>(stats.duplicates), static_cast<unsigned long long>(stats.sends),
                static_cast<unsigned long long>(stats.confirmed));
    return arguments.role == "ping" && last_round.load() != rounds ? 1 : 0;
}
