// zmq_transport_test.cpp — the ZeroMQ transport on real sockets (tcp on loopback, a fresh port
// per address): the transport conformance suite, then what only it has: the directory, refusals
// at the sender (too large, no route), malformed frames from a raw ZeroMQ peer, backpressure at
// the outstanding bound, anycast pinning, a receiver restart, and CURVE with a ZAP allow-list.
#include "choreo/transport/zmq_transport.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "choreo/codec.h"
#include "choreo/durability/memory_store.h"
#include "choreo/service.h"
#include "conformance/transport_conformance.h"
#include "support/free_port.h"
#include "support/temp_dir.h"

namespace choreo::zmq_transport {
namespace {

using namespace std::chrono_literals;
using conformance::deadline_after;
using conformance::envelope_bytes;
using conformance::fresh_address;
using conformance::fresh_message_id;
using conformance::make_outbox;
using conformance::Outbox;
using conformance::Received;
using conformance::receive_until;
using testing_support::free_tcp_endpoint;

// A directory that gives every address it has not seen a fresh loopback port.
std::shared_ptr<Directory> fresh_port_directory() {
    auto directory = std::make_shared<Directory>();
    directory->set_resolver([](const Address&) { return Directory::Entry{free_tcp_endpoint(), {}}; });
    return directory;
}

std::unique_ptr<ZmqTransport> open_endpoint(ZmqOptions options) {
    Result<std::unique_ptr<ZmqTransport>> opened = ZmqTransport::open(std::move(options));
    EXPECT_TRUE(opened.ok()) << opened.status().to_string();
    return opened.ok() ? std::move(opened).value() : nullptr;
}

class ZmqHarness final : public conformance::TransportHarness {
public:
    Transport::Features features() const override {
        return {.ordering = true, .persistence = true, .consumer_groups = false, .redelivery = false};
    }
    std::unique_ptr<Transport> open(const Address& self) override {
        return open_endpoint({.self = self, .directory = directory_});
    }

private:
    std::shared_ptr<Directory> directory_ = fresh_port_directory();
};

using conformance::TransportConformance;
INSTANTIATE_TEST_SUITE_P(Zmq, TransportConformance,
                         ::testing::Values(conformance::TransportHarnessFactory{
                             "zmq", [] { return std::make_unique<ZmqHarness>(); }}),
                         conformance::harness_name);

// ---- the directory ---------------------------------------------------------------------------

TEST(ZmqDirectory, ParsesInstancesSharedStoresAndKeys) {
    const CurveKeyPair pair = generate_keypair().value();
    Result<std::shared_ptr<Directory>> parsed = Directory::parse(
        "# the shop\n"
        "orders/1  tcp://127.0.0.1:7001\n"
        "orders/2  ipc:///tmp/orders-2   # a comment\n"
        "\n"
        "stock/a   tcp://127.0.0.1:7003 key=" + pair.public_key + "\n"
        "orders    shared_store\n");
    ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
    Directory& directory = **parsed;
    EXPECT_EQ(directory.instances("orders"), (std::vector<std::string>{"1", "2"}));
    EXPECT_EQ(directory.find(Address::unicast("orders", "2"))->endpoint, "ipc:///tmp/orders-2");
    EXPECT_EQ(directory.find(Address::unicast("stock", "a"))->public_key, pair.public_key);
    EXPECT_TRUE(directory.shares_store("orders"));
    EXPECT_FALSE(directory.shares_store("stock"));
    EXPECT_FALSE(directory.find(Address::unicast("stock", "b")).has_value());
}

TEST(ZmqDirectory, RefusesBadLinesWithTheLineNumber) {
    for (const char* text : {"orders/1\n", "orders/1 tcp://x:1 key=short\n", "bad//name tcp://x:1\n",
                             "orders tcp://x:1\n", "orders/1 tcp://x:1 colour=blue\n"}) {
        Result<std::shared_ptr<Directory>> parsed = Directory::parse(text);
        ASSERT_FALSE(parsed.ok()) << text;
        EXPECT_EQ(parsed.status().reason(), "invalid_directory") << text;
        EXPECT_NE(parsed.status().message().find("line 1"), std::string::npos) << parsed.status().to_string();
    }
    EXPECT_EQ(Directory::load("/nonexistent/directory.conf").status().reason(), "directory_unreadable");
}

TEST(ZmqKeys, KeyFilesRoundTripAndMismatchesAreRefused) {
    testing_support::TempDir dir{"choreo-zmq-keys"};
    const std::string base = (dir.path() / "orders").string();
    CurveKeyPair pair;
    for (int round = 0; round < 64; round++) {  // Z85 has '#': some of these keys contain one
        pair = generate_keypair().value();
        ASSERT_TRUE(write_keypair(pair, base).ok());
        Result<CurveKeyPair> loaded = load_keypair(base);
        ASSERT_TRUE(loaded.ok()) << loaded.status().to_string() << " for " << pair.public_key;
        EXPECT_EQ(loaded->public_key, pair.public_key);
        EXPECT_EQ(loaded->secret_key, pair.secret_key);
    }

    const CurveKeyPair other = generate_keypair().value();
    std::ofstream{base + ".pub"} << other.public_key << "\n";
    EXPECT_EQ(load_keypair(base).status().reason(), "invalid_key");
    std::ofstream{dir.path() / "allowed"} << "# clients\n" << pair.public_key << "\nnot-a-key\n";
    EXPECT_EQ(load_allow_list((dir.path() / "allowed").string()).status().reason(), "invalid_key");
    EXPECT_EQ(load_key((dir.path() / "missing").string()).status().reason(), "key_file_unreadable");
}

// ---- refusals at the sender ------------------------------------------------------------------

// Receives on `endpoint` until `done` or the deadline (no acknowledging).
ReceiveBatch receive_until_batch(Transport& endpoint, const std::function<bool(const ReceiveBatch&)>& done) {
    ReceiveBatch batch;
    const conformance::Deadline deadline = deadline_after(10s);
    while (!done(batch) && std::chrono::steady_clock::now() < deadline) {
        EXPECT_TRUE(endpoint.receive(batch, 256, 20'000).ok());
    }
    return batch;
}

TEST(ZmqTransport, AMessageOverTheLimitIsRefusedAtTheSender) {
    auto directory = fresh_port_directory();
    auto sender = open_endpoint({.self = fresh_address(), .directory = directory, .message_bytes_max = 600});
    auto receiver = open_endpoint({.self = fresh_address(), .directory = directory});
    Outbox small = make_outbox(1, sender->local_address(), receiver->local_address());
    Bytes big = envelope_bytes(fresh_message_id(), sender->local_address(), receiver->local_address(),
                               std::string(1000, 'x'));
    const MessageId big_id = fresh_message_id();
    OutgoingMessage messages[] = {{big_id, receiver->local_address(), {}, {}, big}, small.messages[0]};
    ASSERT_EQ(sender->send(messages).value(), 2u) << "the refusal must not hold up the next message";
    ReceiveBatch at_sender = receive_until_batch(*sender, [](const ReceiveBatch& b) { return !b.undeliverable.empty(); });
    ASSERT_EQ(at_sender.undeliverable.size(), 1u);
    EXPECT_EQ(at_sender.undeliverable[0].id, big_id);
    EXPECT_EQ(at_sender.undeliverable[0].reason, "message_too_large");
    EXPECT_NE(at_sender.undeliverable[0].detail.find("message_bytes_max 600"), std::string::npos);
    ReceiveBatch at_receiver = receive_until_batch(*receiver, [](const ReceiveBatch& b) { return !b.deliveries.empty(); });
    ASSERT_EQ(at_receiver.deliveries.size(), 1u);
    EXPECT_EQ(at_receiver.deliveries[0].bytes, small.bytes[0]);
    EXPECT_EQ(sender->stats().refused_too_large, 1u);
}

TEST(ZmqTransport, AnAddressTheDirectoryDoesNotListIsRefusedAsNoRoute) {
    auto directory = std::make_shared<Directory>();  // no resolver: only what is listed
    auto sender = open_endpoint({.self = Address::unicast("lonely", "1"), .directory = directory,
                                 .bind = "tcp://127.0.0.1:*"});
    EXPECT_EQ(directory->find(Address::unicast("lonely", "1"))->endpoint, sender->bound_endpoint());
    EXPECT_TRUE(sender->route(Address::anycast("nowhere")).empty());
    Outbox outbox = make_outbox(2, sender->local_address(), Address::unicast("nowhere", "1"));
    outbox.messages[1].to = Address::anycast("nowhere");
    ASSERT_EQ(sender->send(outbox.messages).value(), 2u);
    ReceiveBatch batch = receive_until_batch(*sender, [](const ReceiveBatch& b) { return b.undeliverable.size() == 2; });
    ASSERT_EQ(batch.undeliverable.size(), 2u);
    for (const Undeliverable& refused : batch.undeliverable) EXPECT_EQ(refused.reason, "no_route");
}

TEST(ZmqTransport, OpeningWithoutAnEndpointFailsClearly) {
    auto directory = std::make_shared<Directory>();
    Result<std::unique_ptr<ZmqTransport>> opened = ZmqTransport::open({.self = Address::unicast("x", "1"), .directory = directory});
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().reason(), "no_route");
    opened = ZmqTransport::open({.self = Address::unicast("x", "1"), .directory = directory, .bind = "tcp://256.0.0.1:1"});
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().reason(), "zmq_bind_failed");
}

// ---- malformed input from a peer we did not write ----------------------------------------------

// A raw ZeroMQ DEALER connected to `endpoint`'s receive socket: a peer we did not write.
struct RawPeer {
    explicit RawPeer(const std::string& endpoint) {
        socket.set(zmq::sockopt::linger, 0);
        socket.connect(endpoint);
    }
    zmq::context_t context;
    zmq::socket_t socket{context, zmq::socket_type::dealer};
};

// An id as its 16-byte frame (network order).
std::array<std::uint8_t, 16> id_frame_of(const MessageId& id) { return id.to_bytes(); }

TEST(ZmqTransport, MalformedFramesBecomeDeliveriesWithAReason) {
    auto directory = fresh_port_directory();
    auto receiver = open_endpoint({.self = fresh_address(), .directory = directory});
    RawPeer peer{directory->find(receiver->local_address())->endpoint};
    zmq::socket_t& raw = peer.socket;

    const MessageId good_id = fresh_message_id();
    const Bytes good = envelope_bytes(good_id, Address{}, receiver->local_address());
    const std::array<std::uint8_t, 16> id_array = id_frame_of(good_id);
    const std::uint8_t* id_bytes = id_array.data();
    auto send_frames = [&](std::vector<zmq::const_buffer> frames) { ASSERT_TRUE(zmq::send_multipart(raw, frames)); };
    send_frames({zmq::str_buffer("choreo/zmq/9"), zmq::str_buffer("msg")});                 // wrong version
    send_frames({zmq::buffer(version_frame), zmq::str_buffer("hello")});                    // unknown kind
    const Bytes other = envelope_bytes(fresh_message_id(), Address{}, receiver->local_address());
    send_frames({zmq::buffer(version_frame), zmq::buffer(data_frame), zmq::str_buffer("short-id"),
                 zmq::str_buffer("envelope?"),                                              // bad id frame
                 zmq::const_buffer(id_bytes, 16), zmq::buffer(good),                        // a good pair
                 zmq::const_buffer(id_bytes, 16)});                                         // id, no envelope
    send_frames({zmq::buffer(version_frame), zmq::buffer(data_frame),
                 zmq::const_buffer(id_bytes, 16), zmq::buffer(other)});                    // ids differ

    ReceiveBatch batch = receive_until_batch(*receiver, [](const ReceiveBatch& b) { return b.deliveries.size() >= 6; });
    ASSERT_EQ(batch.deliveries.size(), 6u);
    std::vector<std::string> problems;
    for (const Delivery& delivery : batch.deliveries) problems.push_back(delivery.malformed);
    EXPECT_NE(problems[0].find("unknown version frame 'choreo/zmq/9'"), std::string::npos) << problems[0];
    EXPECT_NE(problems[1].find("unknown kind frame 'hello'"), std::string::npos) << problems[1];
    EXPECT_NE(problems[2].find("id frame of 8 bytes"), std::string::npos) << problems[2];
    EXPECT_EQ(problems[3], "");
    EXPECT_EQ(batch.deliveries[3].bytes, good);
    EXPECT_NE(problems[4].find("id frame without its envelope"), std::string::npos) << problems[4];
    EXPECT_NE(problems[5].find("is not the envelope's id"), std::string::npos) << problems[5];
    EXPECT_EQ(receiver->stats().malformed, 5u);

    // Acknowledging all six answers only the good one, with its id.
    std::vector<DeliveryTag> tags;
    for (const Delivery& delivery : batch.deliveries) tags.push_back(delivery.tag);
    ASSERT_TRUE(receiver->acknowledge(tags).ok());
    std::vector<zmq::message_t> ack;
    raw.set(zmq::sockopt::rcvtimeo, 10'000);
    ASSERT_TRUE(zmq::recv_multipart(raw, std::back_inserter(ack)));
    ASSERT_EQ(ack.size(), 3u);
    EXPECT_EQ(ack[0].to_string_view(), version_frame);
    EXPECT_EQ(ack[1].to_string_view(), ack_frame);
    EXPECT_EQ(ack[2].size(), 16u);
    EXPECT_EQ(std::memcmp(ack[2].data(), id_bytes, 16), 0);
}

TEST(ZmqTransport, AMessageWithTooManyFramesIsCutAndDeadLetteredNotHeld) {
    auto directory = fresh_port_directory();
    auto receiver = open_endpoint({.self = fresh_address(), .directory = directory});
    RawPeer peer{directory->find(receiver->local_address())->endpoint};
    std::vector<zmq::const_buffer> frames = {zmq::buffer(version_frame), zmq::buffer(data_frame)};
    const std::string filler(16, 'x');
    for (int index = 0; index < 3000; index++) frames.push_back(zmq::buffer(filler));
    ASSERT_TRUE(zmq::send_multipart(peer.socket, frames));
    ReceiveBatch batch = receive_until_batch(*receiver, [](const ReceiveBatch& b) { return !b.deliveries.empty(); });
    ASSERT_EQ(batch.deliveries.size(), 1u);
    EXPECT_NE(batch.deliveries[0].malformed.find("more than 1024 envelopes"), std::string::npos)
        << batch.deliveries[0].malformed;
}

// A receiver that acks ids it was never sent (a bug, or a foreign program) settles nothing.
TEST(ZmqTransport, OnlyIdsSentToThatPeerAreConfirmed) {
    auto directory = fresh_port_directory();
    const Address fake_address = fresh_address();
    zmq::context_t context;
    zmq::socket_t fake{context, zmq::socket_type::router};  // plays the receiver
    fake.set(zmq::sockopt::linger, 0);
    fake.bind(directory->find(fake_address)->endpoint);
    auto sender = open_endpoint({.self = fresh_address(), .directory = directory});
    Outbox outbox = make_outbox(1, sender->local_address(), fake_address);
    ASSERT_EQ(sender->send(outbox.messages).value(), 1u);
    std::vector<zmq::message_t> data;
    fake.set(zmq::sockopt::rcvtimeo, 10'000);
    ASSERT_TRUE(zmq::recv_multipart(fake, std::back_inserter(data)));
    const std::array<std::uint8_t, 16> stranger = id_frame_of(fresh_message_id());
    std::vector<zmq::const_buffer> ack = {zmq::buffer(data[0].data(), data[0].size()), zmq::buffer(version_frame),
                                          zmq::buffer(ack_frame), zmq::const_buffer(stranger.data(), 16),
                                          zmq::const_buffer(data.at(3).data(), 16)};
    ASSERT_TRUE(zmq::send_multipart(fake, ack));
    ReceiveBatch batch = receive_until_batch(*sender, [](const ReceiveBatch& b) { return !b.confirmed.empty(); });
    EXPECT_EQ(batch.confirmed, std::vector<MessageId>{outbox.ids[0]});
    EXPECT_EQ(sender->stats().acks_ignored, 1u);
}

// ---- flow control and pinning ----------------------------------------------------------------

TEST(ZmqTransport, BackpressureAtTheOutstandingBoundUntilAcksComeBack) {
    auto directory = fresh_port_directory();
    auto sender = open_endpoint({.self = fresh_address(), .directory = directory, .outstanding_per_peer_max = 10});
    auto receiver = open_endpoint({.self = fresh_address(), .directory = directory});
    Outbox outbox = make_outbox(25, sender->local_address(), receiver->local_address());
    ASSERT_EQ(sender->send(outbox.messages).value(), 10u);
    EXPECT_EQ(sender->send(std::span(outbox.messages).subspan(10)).value(), 0u);
    // A retransmission of an outstanding message is not new: it is accepted.
    EXPECT_EQ(sender->send(std::span(outbox.messages).subspan(0, 3)).value(), 3u);

    Received at_receiver;
    ASSERT_TRUE(receive_until(*receiver, at_receiver, [](const Received& r) { return r.delivered_count.size() == 10; },
                              deadline_after(10s), {.acknowledge = true}));
    Received at_sender;
    ASSERT_TRUE(receive_until(*sender, at_sender, [](const Received& r) { return r.confirmed_count.size() == 10; },
                              deadline_after(10s)));
    EXPECT_EQ(sender->send(std::span(outbox.messages).subspan(10)).value(), 10u);
    EXPECT_GE(sender->stats().backpressure, 1u);
}

TEST(ZmqTransport, AnycastRoundRobinPinsAndSharedStoresDoNot) {
    auto directory = std::make_shared<Directory>();
    for (const char* instance : {"1", "2", "3"}) {
        ASSERT_TRUE(directory->add(Address::unicast("pool", instance), {free_tcp_endpoint(), {}}).ok());
    }
    auto sender = open_endpoint({.self = Address::unicast("client", "1"), .directory = directory,
                                 .bind = "tcp://127.0.0.1:*"});
    std::vector<std::string> routes;
    for (int index = 0; index < 6; index++) routes.push_back(sender->route(Address::anycast("pool")));
    EXPECT_EQ(routes, (std::vector<std::string>{"1", "2", "3", "1", "2", "3"}));
    directory->set_shared_store("pool");
    EXPECT_EQ(sender->route(Address::anycast("pool")), "");
}

TEST(ZmqTransport, AnAnycastRouteSkipsAnInstanceAtItsBound) {
    auto directory = fresh_port_directory();
    ASSERT_TRUE(directory->add(Address::unicast("busy", "1"), {free_tcp_endpoint(), {}}).ok());
    ASSERT_TRUE(directory->add(Address::unicast("busy", "2"), {free_tcp_endpoint(), {}}).ok());
    auto sender = open_endpoint({.self = fresh_address(), .directory = directory, .outstanding_per_peer_max = 2});
    Outbox outbox = make_outbox(2, sender->local_address(), Address::unicast("busy", "1"));
    ASSERT_EQ(sender->send(outbox.messages).value(), 2u);  // nobody listens: both stay outstanding
    for (int index = 0; index < 3; index++) EXPECT_EQ(sender->route(Address::anycast("busy")), "2");
}

TEST(ZmqTransport, ASenderThatStartsFirstAndAReceiverThatRestartsAreBothReached) {
    auto directory = fresh_port_directory();
    const Address receiver_address = fresh_address();
    auto sender = open_endpoint({.self = fresh_address(), .directory = directory});
    Outbox early = make_outbox(3, sender->local_address(), receiver_address);
    ASSERT_EQ(sender->send(early.messages).value(), 3u);  // nobody bound yet
    for (int life = 0; life < 3; life++) {
        auto receiver = open_endpoint({.self = receiver_address, .directory = directory});
        Outbox outbox = life == 0 ? std::move(early) : make_outbox(3, sender->local_address(), receiver_address);
        if (life > 0) {
            ASSERT_EQ(sender->send(outbox.messages).value(), 3u);
        }
        Received at_receiver;
        ASSERT_TRUE(receive_until(*receiver, at_receiver,
                                  [&](const Received& r) {
                                      return std::all_of(outbox.ids.begin(), outbox.ids.end(),
                                                         [&](const MessageId& id) { return r.delivered(id) > 0; });
                                  },
                                  deadline_after(10s), {.acknowledge = true}))
            << "life " << life;
        Received at_sender;
        ASSERT_TRUE(receive_until(*sender, at_sender,
                                  [&](const Received& r) { return r.confirmed(outbox.ids.back()) > 0; },
                                  deadline_after(10s)))
            << "life " << life;
    }
}

// ---- with the runtime ------------------------------------------------------------------------

struct Recorded {
    std::mutex mutex;
    std::vector<std::string> seen;
    std::size_t count() {
        std::lock_guard lock{mutex};
        return seen.size();
    }
};

// One service on a ZeroMQ endpoint with a memory store, run on its own thread.
struct Node {
    Node(ZmqOptions options, std::string name, std::function<void(Service&)> setup,
         const std::function<void(ServiceOptions&)>& tune = {})
        : transport(open_endpoint(std::move(options))) {
        ServiceOptions service_options{.name = std::move(name), .instance = "1"};
        if (tune) tune(service_options);
        service = std::make_unique<Service>(service_options, *transport, store);
        setup(*service);
        runner = std::thread{[this] { ended = service->run(); }};
    }
    ~Node() {
        service->stop();
        runner.join();
    }
    std::vector<DeadLetter> dead_letters() { return store.dead_letters("", 100).value(); }

    std::unique_ptr<ZmqTransport> transport;
    MemoryStore store;
    std::unique_ptr<Service> service;
    Status ended;
    std::thread runner;
};

bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds patience = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + patience;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

TEST(ZmqService, ATooLargeSendIsDeadLetteredWithItsReasonAndTheRestFlows) {
    auto directory = fresh_port_directory();
    Recorded recorded;
    const std::string server_name = conformance::fresh_service_name();
    Node server{{.self = Address::unicast(server_name, "1"), .directory = directory}, server_name, [&](Service& svc) {
                    svc.on("note", [&](Context&, const std::string& text) {
                        std::lock_guard lock{recorded.mutex};
                        recorded.seen.push_back(text);
                    });
                }};
    const std::string client_name = conformance::fresh_service_name();
    Node client{{.self = Address::unicast(client_name, "1"), .directory = directory, .message_bytes_max = 2000},
                client_name, [](Service&) {}};
    ASSERT_TRUE(client.service->post(server_name, "note", std::string(5000, 'x')).ok());
    ASSERT_TRUE(client.service->post(server_name, "note", std::string("small")).ok());
    ASSERT_TRUE(wait_for([&] { return recorded.count() == 1 && !client.dead_letters().empty(); }));
    const std::vector<DeadLetter> letters = client.dead_letters();
    ASSERT_EQ(letters.size(), 1u);
    EXPECT_EQ(letters[0].reason, "message_too_large");
    EXPECT_GT(letters[0].raw.size(), 5000u) << "the refused message is kept whole";
    EXPECT_EQ(client.service->redrive(letters[0].key).reason(), "not_redrivable") << "it is not an input";
    EXPECT_TRUE(wait_for([&] { return client.service->unsettled_sends() == 0; }));
    std::lock_guard lock{recorded.mutex};
    EXPECT_EQ(recorded.seen, std::vector<std::string>{"small"});
}

// At the outstanding bound the sender's runtime is held back; nothing committed is dropped, and
// once the receiver is up every message is applied exactly once.
TEST(ZmqService, BackpressureWhileTheReceiverIsAwayLosesNothing) {
    constexpr int message_count = 600;
    auto directory = fresh_port_directory();
    const std::string server_name = conformance::fresh_service_name();
    const std::string client_name = conformance::fresh_service_name();
    Node client{{.self = Address::unicast(client_name, "1"), .directory = directory, .outstanding_per_peer_max = 50},
                client_name, [](Service&) {}};
    for (int index = 0; index < message_count; index++) {
        ASSERT_TRUE(client.service->post(server_name + "/1", "count", index).ok());
    }
    // All committed to the outbox, the first 50 handed to ZeroMQ, the rest held back.
    ASSERT_TRUE(wait_for([&] {
        return client.service->unsettled_sends() == static_cast<std::size_t>(message_count) &&
               client.transport->stats().backpressure > 0;
    })) << "the client never reached its bound";

    std::mutex mutex;
    std::map<int, int> applied;
    Node server{{.self = Address::unicast(server_name, "1"), .directory = directory}, server_name, [&](Service& svc) {
                    svc.on("count", [&](Context&, const int& index) {
                        std::lock_guard lock{mutex};
                        applied[index]++;
                    });
                }};
    ASSERT_TRUE(wait_for([&] { return client.service->unsettled_sends() == 0; }, 60s))
        << client.service->unsettled_sends() << " still unsettled";
    std::lock_guard lock{mutex};
    ASSERT_EQ(applied.size(), static_cast<std::size_t>(message_count));
    for (const auto& [index, times] : applied) EXPECT_EQ(times, 1) << "message " << index;
    EXPECT_TRUE(client.dead_letters().empty());
}

// A peer that is gone keeps its queue full; the sender gives it a fresh socket after
// peer_reset_after_ms, so retransmissions count and the row ends as a dead letter, not forever
// in the outbox.
TEST(ZmqService, SendsToAPeerThatNeverComesEndAsDeadLetters) {
    auto directory = fresh_port_directory();
    const std::string client_name = conformance::fresh_service_name();
    ZmqOptions options{.self = Address::unicast(client_name, "1"), .directory = directory,
                       .send_hwm_messages = 1, .peer_reset_after_ms = 100};
    Node client{options, client_name, [](Service&) {}, [](ServiceOptions& service) {
                    service.kernel.send_attempts_max = 4;
                    service.kernel.send_retry_delay_ms_min = 10;
                    service.kernel.send_retry_delay_ms_max = 40;
                }};
    for (int index = 0; index < 3; index++) {
        ASSERT_TRUE(client.service->post(fresh_address().to_string(), "note", index).ok());
    }
    ASSERT_TRUE(wait_for([&] { return client.dead_letters().size() == 3; }, 30s))
        << client.dead_letters().size() << " dead letters, " << client.service->unsettled_sends() << " unsettled";
    for (const DeadLetter& letter : client.dead_letters()) EXPECT_EQ(letter.reason, "send_attempts_exhausted");
    EXPECT_GE(client.transport->stats().peer_resets, 1u);
}

// ZeroMQ gives up on a connection after a failed CURVE handshake; once the receiver allows the
// key (here: restarts with a new allow-list), the sender's fresh socket gets through.
TEST(ZmqService, ARefusedClientGetsThroughOnceItsKeyIsAllowed) {
    testing_support::TempDir dir{"choreo-zmq-curve-later"};
    const CurveKeyPair server_keys = generate_keypair().value();
    const CurveKeyPair client_keys = generate_keypair().value();
    const std::string server_name = conformance::fresh_service_name();
    const std::string client_name = conformance::fresh_service_name();
    auto directory = std::make_shared<Directory>();
    ASSERT_TRUE(directory->add(Address::unicast(server_name, "1"), {free_tcp_endpoint(), server_keys.public_key}).ok());
    directory->set_resolver([](const Address&) { return Directory::Entry{free_tcp_endpoint(), {}}; });
    Recorded recorded;
    auto server_setup = [&](Service& svc) {
        svc.on("hello", [&](Context&, const std::string& who) {
            std::lock_guard lock{recorded.mutex};
            recorded.seen.push_back(who);
        });
    };
    Node client{{.self = Address::unicast(client_name, "1"), .directory = directory,
                 .peer_reset_after_ms = 200, .curve = CurveOptions{client_keys, {}}},
                client_name, [](Service&) {}};
    ASSERT_TRUE(client.service->post(server_name, "hello", std::string("client")).ok());
    {
        Node strict{{.self = Address::unicast(server_name, "1"), .directory = directory,
                     .curve = CurveOptions{server_keys, {}}},
                    server_name, server_setup};
        ASSERT_TRUE(wait_for([&] { return strict.transport->stats().zap_denied > 0; }));
    }
    Node lenient{{.self = Address::unicast(server_name, "1"), .directory = directory,
                  .curve = CurveOptions{server_keys, {client_keys.public_key}}},
                 server_name, server_setup};
    ASSERT_TRUE(wait_for([&] { return recorded.count() == 1; }, 30s)) << "never got through after the key was allowed";
    EXPECT_TRUE(wait_for([&] { return client.service->unsettled_sends() == 0; }, 30s));
}

// CURVE: the server admits the client keys on its allow-list (read from files) and nobody else.
TEST(ZmqService, CurveAdmitsAllowedClientsAndNeverHandsOthersToAHandler) {
    testing_support::TempDir dir{"choreo-zmq-curve"};
    auto keys_at = [&](const std::string& name) {
        const std::string base = (dir.path() / name).string();
        EXPECT_TRUE(write_keypair(generate_keypair().value(), base).ok());
        return load_keypair(base).value();
    };
    const CurveKeyPair server_keys = keys_at("server");
    const CurveKeyPair allowed_keys = keys_at("allowed");
    const CurveKeyPair stranger_keys = keys_at("stranger");
    std::ofstream{dir.path() / "clients.allow"} << "# who may talk to the server\n" << allowed_keys.public_key << "\n";
    const std::vector<std::string> allow_list = load_allow_list((dir.path() / "clients.allow").string()).value();

    const std::string server_name = conformance::fresh_service_name();
    auto directory = std::make_shared<Directory>();
    ASSERT_TRUE(directory->add(Address::unicast(server_name, "1"), {free_tcp_endpoint(), server_keys.public_key}).ok());
    directory->set_resolver([](const Address&) { return Directory::Entry{free_tcp_endpoint(), {}}; });
    Recorded recorded;
    Node server{{.self = Address::unicast(server_name, "1"), .directory = directory,
                 .curve = CurveOptions{server_keys, allow_list}},
                server_name, [&](Service& svc) {
                    svc.on("hello", [&](Context&, const std::string& who) {
                        std::lock_guard lock{recorded.mutex};
                        recorded.seen.push_back(who);
                    });
                }};
    // The clients are CURVE clients too; the server answers nobody here, so their own allow-lists
    // are empty.
    auto client_options = [&](const std::string& name, const CurveKeyPair& keys) {
        return ZmqOptions{.self = Address::unicast(name, "1"), .directory = directory, .curve = CurveOptions{keys, {}}};
    };
    const std::string stranger_name = conformance::fresh_service_name();
    Node stranger{client_options(stranger_name, stranger_keys), stranger_name, [](Service&) {}};
    ASSERT_TRUE(stranger.service->post(server_name, "hello", std::string("stranger")).ok());
    ASSERT_TRUE(wait_for([&] { return server.transport->stats().zap_denied > 0; })) << "the stranger never knocked";

    const std::string friend_name = conformance::fresh_service_name();
    Node good{client_options(friend_name, allowed_keys), friend_name, [](Service&) {}};
    ASSERT_TRUE(good.service->post(server_name, "hello", std::string("friend")).ok());
    ASSERT_TRUE(wait_for([&] { return recorded.count() == 1; })) << "the allowed client was not admitted";
    ASSERT_TRUE(wait_for([&] { return good.service->unsettled_sends() == 0; })) << "its send was never confirmed";

    // The stranger's send stays unconfirmed in its outbox; none of it reaches the handler.
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(stranger.service->unsettled_sends(), 1u);
    EXPECT_GE(server.transport->stats().zap_denied, 1u);
    EXPECT_GE(server.transport->stats().zap_allowed, 1u);
    std::lock_guard lock{recorded.mutex};
    EXPECT_EQ(recorded.seen, std::vector<std::string>{"friend"});
}

}  // namespace
}  // namespace choreo::zmq_transport
