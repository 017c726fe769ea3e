// tests/conformance/transport_conformance.cpp — the helpers and TEST_P cases of the transport
// suite (see transport_conformance.h for how an adapter runs it).
#include "conformance/transport_conformance.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "choreo/codec.h"
#include "choreo/envelope.h"
#include "choreo/system.h"

namespace choreo::conformance {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Helpers

void PrintTo(const TransportHarnessFactory& factory, std::ostream* out) { *out << factory.name; }

std::string harness_name(const ::testing::TestParamInfo<TransportHarnessFactory>& info) {
    return info.param.name;
}

namespace {

std::string base36(std::uint64_t value) {
    constexpr std::string_view digits = "0123456789abcdefghijklmnopqrstuvwxyz";
    std::string text;
    do {
        text.insert(text.begin(), digits[value % 36]);
        value /= 36;
    } while (value > 0);
    return text;
}

// Distinguishes this process from earlier runs against a broker that keeps its topics.
std::string run_tag() {
    const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch).count();
    return std::to_string(::getpid()) + "-" + base36(static_cast<std::uint64_t>(seconds));
}

// The running test's name as an address part: lowercase letters, digits and '-'.
std::string test_name_part() {
    constexpr std::size_t name_bytes_max = 24;  // leaves room for the run tag and counter
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string name = info != nullptr ? info->name() : "test";
    std::string part;
    for (char c : name) {
        if (part.size() == name_bytes_max) break;
        const auto byte = static_cast<unsigned char>(c);
        part.push_back(std::isalnum(byte) ? static_cast<char>(std::tolower(byte)) : '-');
    }
    return part;
}

}  // namespace

std::string fresh_service_name() {
    static const std::string run = run_tag();
    static std::atomic<std::uint64_t> counter{0};
    std::string name = test_name_part() + "-" + run + "-" + std::to_string(counter++);
    CHOREO_ASSERT(Address::valid_name(name));
    return name;
}

Address fresh_address(std::string_view instance) { return Address::unicast(fresh_service_name(), instance); }

MessageId fresh_message_id() {
    static std::mutex mutex;
    static SystemClock clock;
    static SystemRandom random;
    static IdGenerator ids{clock, random};
    std::lock_guard lock{mutex};
    return ids.next();
}

Bytes envelope_bytes(const MessageId& id, const Address& from, const Address& to, std::string_view body) {
    static SystemClock clock;
    Envelope envelope;
    envelope.id = id;
    envelope.kind = "conformance";
    envelope.from = from;
    envelope.to = to;
    envelope.correlation = id.to_string();
    envelope.sent_at_ms = clock.now_ms();
    envelope.headers["suite"] = "transport";
    envelope.body = bytes_of(body);
    Result<Bytes> encoded = encode_envelope(envelope, MessageLimits{});
    CHOREO_ASSERT(encoded.ok());  // the suite builds only valid envelopes
    return std::move(encoded).value();
}

Outbox make_outbox(std::size_t count, const Address& from, const Address& to, const std::string& route,
                   const std::string& key) {
    Outbox outbox;
    outbox.ids.reserve(count);
    outbox.bytes.reserve(count);
    for (std::size_t index = 0; index < count; index++) {
        outbox.ids.push_back(fresh_message_id());
        outbox.bytes.push_back(envelope_bytes(outbox.ids.back(), from, to, "message " + std::to_string(index)));
    }
    // Built after `bytes` is complete: the views stay valid because `bytes` never grows again.
    outbox.messages.reserve(count);
    for (std::size_t index = 0; index < count; index++) {
        outbox.messages.push_back(OutgoingMessage{outbox.ids[index], to, route, key, outbox.bytes[index]});
    }
    return outbox;
}

std::size_t Received::delivered(const MessageId& id) const {
    auto found = delivered_count.find(id);
    return found == delivered_count.end() ? 0 : found->second;
}

std::size_t Received::confirmed(const MessageId& id) const {
    auto found = confirmed_count.find(id);
    return found == confirmed_count.end() ? 0 : found->second;
}

std::vector<DeliveryTag> Received::tags() const {
    std::vector<DeliveryTag> tags;
    tags.reserve(deliveries.size());
    for (const Delivery& delivery : deliveries) tags.push_back(delivery.tag);
    return tags;
}

MessageId envelope_id_of(const Delivery& delivery) {
    Result<Envelope> envelope = decode_envelope(delivery.bytes, MessageLimits{});
    EXPECT_TRUE(envelope.ok()) << "delivered bytes are not the envelope sent: " << envelope.status().to_string();
    return envelope.ok() ? envelope->id : MessageId{};
}

Status receive_once(Transport& transport, Received& received, const PollOptions& options) {
    ReceiveBatch batch;
    const auto timeout_us = std::chrono::duration_cast<std::chrono::microseconds>(options.receive_timeout);
    Status status = transport.receive(batch, options.deliveries_max, timeout_us.count());
    received.polls++;
    if (!status.ok()) {
        ADD_FAILURE() << "receive failed: " << status.to_string();
        return status;
    }
    EXPECT_LE(batch.deliveries.size(), options.deliveries_max) << "receive returned more than deliveries_max";
    for (const MessageId& id : batch.confirmed) received.confirmed_count[id]++;
    std::vector<DeliveryTag> tags;
    for (Delivery& delivery : batch.deliveries) {
        const MessageId id = envelope_id_of(delivery);
        received.delivered_order.push_back(id);
        received.delivered_count[id]++;
        tags.push_back(delivery.tag);
        received.deliveries.push_back(std::move(delivery));
    }
    if (options.acknowledge && !tags.empty()) {
        Status acknowledged = transport.acknowledge(tags);
        EXPECT_TRUE(acknowledged.ok()) << "acknowledge failed: " << acknowledged.to_string();
        return acknowledged;
    }
    return Status{};
}

bool receive_until(Transport& transport, Received& received, const std::function<bool(const Received&)>& done,
                   Deadline deadline, const PollOptions& options) {
    while (!done(received)) {
        if (SteadyClock::now() >= deadline) return false;
        if (!receive_once(transport, received, options).ok()) return false;
    }
    return true;
}

void receive_for(Transport& transport, Received& received, std::chrono::milliseconds duration,
                 const PollOptions& options) {
    const Deadline deadline = deadline_after(duration);
    while (SteadyClock::now() < deadline) {
        if (!receive_once(transport, received, options).ok()) return;
    }
}

std::size_t send_all(Transport& transport, std::span<const OutgoingMessage> batch, Deadline deadline) {
    std::size_t accepted_total = 0;
    while (accepted_total < batch.size()) {
        Result<std::size_t> accepted = transport.send(batch.subspan(accepted_total));
        if (!accepted.ok()) {
            ADD_FAILURE() << "send failed: " << accepted.status().to_string();
            break;
        }
        EXPECT_LE(*accepted, batch.size() - accepted_total) << "send accepted more than it was offered";
        accepted_total += std::min(*accepted, batch.size() - accepted_total);
        if (accepted_total == batch.size() || SteadyClock::now() >= deadline) break;
        // Backpressure: pace the next offer instead of spinning while receivers drain.
        if (*accepted == 0) std::this_thread::sleep_for(10ms);
    }
    return accepted_total;
}

// ---------------------------------------------------------------------------------------------
// The fixture

void TransportConformance::SetUp() {
    ASSERT_TRUE(GetParam().make) << "harness factory '" << GetParam().name << "' has no make";
    harness_ = GetParam().make();
    ASSERT_NE(harness_, nullptr);
}

void TransportConformance::TearDown() { harness_.reset(); }

std::unique_ptr<Transport> TransportConformance::open(const Address& self) {
    CHOREO_ASSERT(self.is_unicast());
    std::unique_ptr<Transport> transport = harness_->open(self);
    CHOREO_ASSERT(transport != nullptr);  // a harness that cannot open is broken, not failing
    EXPECT_EQ(transport->local_address(), self);
    return transport;
}

void TransportConformance::expect_round_trip(Transport& from, Transport& to, Received* at_to) {
    Outbox outbox = make_outbox(1, from.local_address(), to.local_address());
    const MessageId id = outbox.ids[0];
    ASSERT_EQ(send_all(from, outbox.messages, patient_deadline()), 1u);
    Received received;
    Received& at_receiver = at_to != nullptr ? *at_to : received;
    ASSERT_TRUE(receive_until(to, at_receiver, [&](const Received& r) { return r.delivered(id) > 0; },
                              patient_deadline(), {.acknowledge = true}))
        << "the message never arrived";
    Received at_sender;
    ASSERT_TRUE(receive_until(from, at_sender, [&](const Received& r) { return r.confirmed(id) > 0; },
                              patient_deadline()))
        << "the acknowledged message was never confirmed to its sender";
}

// ---------------------------------------------------------------------------------------------
// The tests

TEST_P(TransportConformance, EndpointReportsItsAddressAndFeatures) {
    const Address self = fresh_address("instance-7");
    std::unique_ptr<Transport> endpoint = open(self);
    EXPECT_EQ(endpoint->local_address(), self);
    const Transport::Features declared = features();
    const Transport::Features reported = endpoint->features();
    EXPECT_EQ(reported.ordering, declared.ordering);
    EXPECT_EQ(reported.persistence, declared.persistence);
    EXPECT_EQ(reported.consumer_groups, declared.consumer_groups);
    EXPECT_EQ(reported.redelivery, declared.redelivery);
}

TEST_P(TransportConformance, RoundTrip) {
    std::unique_ptr<Transport> sender = open(fresh_address());
    std::unique_ptr<Transport> receiver = open(fresh_address());
    Outbox outbox = make_outbox(1, sender->local_address(), receiver->local_address());
    const MessageId id = outbox.ids[0];
    ASSERT_EQ(send_all(*sender, outbox.messages, patient_deadline()), 1u);

    Received at_receiver;
    ASSERT_TRUE(receive_until(*receiver, at_receiver, [&](const Received& r) { return r.delivered(id) > 0; },
                              patient_deadline()))
        << "the message never arrived";
    const Delivery& delivery = at_receiver.deliveries.front();
    EXPECT_EQ(delivery.bytes, outbox.bytes[0]) << "bytes changed on the way";
    if (delivery.position.has_value()) {
        EXPECT_FALSE(delivery.position->stream.empty()) << "a stream position must name its stream";
    }

    Received at_sender;
    if (harness().confirms_on_acknowledge()) {
        // Brokerless: not acknowledged yet, so not confirmed yet (a short look, by design).
        receive_for(*sender, at_sender, 200ms);
        EXPECT_EQ(at_sender.confirmed(id), 0u) << "confirmed before the receiver acknowledged";
    }
    ASSERT_TRUE(receiver->acknowledge(at_receiver.tags()).ok());
    ASSERT_TRUE(receive_until(*sender, at_sender, [&](const Received& r) { return r.confirmed(id) > 0; },
                              patient_deadline()))
        << "the acknowledged message was never confirmed to its sender";
    EXPECT_TRUE(at_sender.deliveries.empty()) << "the sender received something nobody sent it";
}

TEST_P(TransportConformance, ReceiveAppendsToTheBatch) {
    std::unique_ptr<Transport> sender = open(fresh_address());
    std::unique_ptr<Transport> receiver = open(fresh_address());
    Outbox outbox = make_outbox(1, sender->local_address(), receiver->local_address());
    ASSERT_EQ(send_all(*sender, outbox.messages, patient_deadline()), 1u);

    const MessageId sentinel = fresh_message_id();
    ReceiveBatch batch;
    batch.confirmed.push_back(sentinel);
    const Deadline deadline = patient_deadline();
    while (batch.deliveries.empty() && SteadyClock::now() < deadline) {
        ASSERT_TRUE(receiver->receive(batch, 16, 50'000).ok());
    }
    ASSERT_EQ(batch.deliveries.size(), 1u) << "the message never arrived";
    ASSERT_FALSE(batch.confirmed.empty());
    EXPECT_EQ(batch.confirmed.front(), sentinel) << "receive must append to `out`, not replace it";
    EXPECT_EQ(batch.deliveries.front().bytes, outbox.bytes[0]);
    const DeliveryTag tag = batch.deliveries.front().tag;
    EXPECT_TRUE(receiver->acknowledge({&tag, 1}).ok());
}

TEST_P(TransportConformance, ZeroDeliveriesMaxWaitsForConfirmationsOnly) {
    std::unique_ptr<Transport> sender = open(fresh_address());
    std::unique_ptr<Transport> receiver = open(fresh_address());
    Outbox outbox = make_outbox(1, sender->local_address(), receiver->local_address());
    const MessageId id = outbox.ids[0];
    ASSERT_EQ(send_all(*sender, outbox.messages, patient_deadline()), 1u);

    // A delivery is waiting, but a receive asking for none neither takes it nor stops waiting
    // for it: a few 50 ms polls fill 200 ms, a busy loop would make thousands.
    Received confirmations_only;
    receive_for(*receiver, confirmations_only, 200ms, {.deliveries_max = 0});
    EXPECT_TRUE(confirmations_only.deliveries.empty());
    EXPECT_LE(confirmations_only.polls, 20u) << "receive with deliveries_max 0 did not wait";

    Received at_receiver;
    ASSERT_TRUE(receive_until(*receiver, at_receiver, [&](const Received& r) { return r.delivered(id) > 0; },
                              patient_deadline(), {.acknowledge = true}));
    Received at_sender;
    ASSERT_TRUE(receive_until(*sender, at_sender, [&](const Received& r) { return r.confirmed(id) > 0; },
                              patient_deadline(), {.deliveries_max = 0}))
        << "a receive with deliveries_max 0 must still return confirmations";
}

TEST_P(TransportConformance, AnycastReachesTheInstance) {
    std::unique_ptr<Transport> receiver = open(fresh_address("1"));
    const Address service = receiver->local_address().service_address();
    std::unique_ptr<Transport> sender = open(fresh_address());
    const std::string route = sender->route(service);
    if (!route.empty()) {
        EXPECT_EQ(route, "1") << "pinned to an instance that does not exist";
    }

    Outbox outbox = make_outbox(1, sender->local_address(), service, route);
    const MessageId id = outbox.ids[0];
    ASSERT_EQ(send_all(*sender, outbox.messages, patient_deadline()), 1u);
    Received at_receiver;
    ASSERT_TRUE(receive_until(*receiver, at_receiver, [&](const Received& r) { return r.delivered(id) > 0; },
                              patient_deadline(), {.acknowledge = true}))
        << "the anycast message never reached the only instance";
    EXPECT_EQ(at_receiver.deliveries.front().bytes, outbox.bytes[0]);
    Received at_sender;
    ASSERT_TRUE(receive_until(*sender, at_sender, [&](const Received& r) { return r.confirmed(id) > 0; },
                              patient_deadline()));
}

TEST_P(TransportConformance, AnycastOverTwoInstancesDeliversEachMessage) {
    constexpr std::size_t message_count = 20;
    const std::string service = fresh_service_name();
    std::unique_ptr<Transport> instances[2] = {open(Address::unicast(service, "1")),
                                               open(Address::unicast(service, "2"))};
    std::unique_ptr<Transport> sender = open(fresh_address());
    const Address anycast = Address::anycast(service);
    Outbox outbox = make_outbox(message_count, sender->local_address(), anycast);
    for (std::size_t index = 0; index < message_count; index++) {
        outbox.messages[index].route = sender->route(anycast);  // one pin per message
        outbox.messages[index].key = "key-" + std::to_string(index);  // spread over partitions
        const std::string& route = outbox.messages[index].route;
        EXPECT_TRUE(route.empty() || route == "1" || route == "2") << "pinned to unknown instance " << route;
    }
    ASSERT_EQ(send_all(*sender, outbox.messages, patient_deadline()), message_count);

    // Both instances poll in turn until every message reached one of them.
    Received at[2];
    auto arrived = [&] {
        for (const MessageId& id : outbox.ids) {
            if (at[0].delivered(id) + at[1].delivered(id) == 0) return false;
        }
        return true;
    };
    const Deadline deadline = patient_deadline();
    while (!arrived() && SteadyClock::now() < deadline) {
        for (std::size_t index = 0; index < 2; index++) {
            ASSERT_TRUE(receive_once(*instances[index], at[index], {.acknowledge = true}).ok());
        }
    }
    ASSERT_TRUE(arrived()) << at[0].delivered_count.size() + at[1].delivered_count.size() << " of "
                           << message_count << " arrived";
    // A pinned message goes to the instance it is pinned to, and only there (design §4.6).
    for (std::size_t index = 0; index < message_count; index++) {
        const std::string& route = outbox.messages[index].route;
        if (route.empty()) continue;
        const std::size_t pinned = route == "1" ? 0 : 1;
        EXPECT_GE(at[pinned].delivered(outbox.ids[index]), 1u) << "message " << index;
        EXPECT_EQ(at[1 - pinned].delivered(outbox.ids[index]), 0u) << "message " << index;
    }
}

TEST_P(TransportConformance, BatchesOfManyMessages) {
    constexpr std::size_t message_count = 500;
    constexpr std::size_t deliveries_max = 37;  // odd, so batches do not divide evenly
    std::unique_ptr<Transport> sender = open(fresh_address());
    std::unique_ptr<Transport> receiver = open(fresh_address());
    Outbox outbox = make_outbox(message_count, sender->local_address(), receiver->local_address());
    const PollOptions poll{.deliveries_max = deliveries_max, .acknowledge = true};

    // One send call offers all 500; whatever backpressure leaves over is offered again while
    // the receiver drains.
    Received at_receiver;
    std::size_t sent = 0;
    const Deadline deadline = patient_deadline();
    while (sent < message_count && SteadyClock::now() < deadline) {
        Result<std::size_t> accepted = sender->send(std::span(outbox.messages).subspan(sent));
        ASSERT_TRUE(accepted.ok()) << accepted.status().to_string();
        ASSERT_LE(*accepted, message_count - sent);
        sent += *accepted;
        if (sent < message_count) {
            ASSERT_TRUE(receive_once(*receiver, at_receiver, poll).ok());
        }
    }
    ASSERT_EQ(sent, message_count);

    auto all_arrived = [&](const Received& r) { return r.delivered_count.size() == message_count; };
    ASSERT_TRUE(receive_until(*receiver, at_receiver, all_arrived, patient_deadline(), poll))
        << at_receiver.delivered_count.size() << " of " << message_count << " arrived";
    for (const MessageId& id : outbox.ids) EXPECT_GE(at_receiver.delivered(id), 1u);
    EXPECT_GE(at_receiver.polls, message_count / deliveries_max);

    Received at_sender;
    auto all_confirmed = [&](const Received& r) { return r.confirmed_count.size() == message_count; };
    ASSERT_TRUE(receive_until(*sender, at_sender, all_confirmed, patient_deadline()))
        << at_sender.confirmed_count.size() << " of " << message_count << " confirmed";
}

TEST_P(TransportConformance, DuplicatesAreTolerated) {
    std::unique_ptr<Transport> sender = open(fresh_address());
    std::unique_ptr<Transport> receiver = open(fresh_address());
    Outbox outbox = make_outbox(1, sender->local_address(), receiver->local_address());
    const MessageId id = outbox.ids[0];
    // A retransmission: same id, same bytes, a second send call.
    ASSERT_EQ(send_all(*sender, outbox.messages, patient_deadline()), 1u);
    ASSERT_EQ(send_all(*sender, outbox.messages, patient_deadline()), 1u);

    const PollOptions acknowledge_each{.acknowledge = true};
    Received at_receiver;
    ASSERT_TRUE(receive_until(*receiver, at_receiver, [&](const Received& r) { return r.delivered(id) >= 1; },
                              patient_deadline(), acknowledge_each));
    // The second copy may come or be dropped as a duplicate; give it a moment either way.
    (void)receive_until(*receiver, at_receiver, [&](const Received& r) { return r.delivered(id) >= 2; },
                        deadline_after(1s), acknowledge_each);
    EXPECT_LE(at_receiver.delivered(id), 2u);
    for (const Delivery& delivery : at_receiver.deliveries) EXPECT_EQ(delivery.bytes, outbox.bytes[0]);
    EXPECT_TRUE(receiver->acknowledge(at_receiver.tags()).ok()) << "acknowledging twice must be harmless";

    Received at_sender;
    ASSERT_TRUE(receive_until(*sender, at_sender, [&](const Received& r) { return r.confirmed(id) >= 1; },
                              patient_deadline()));
    (void)receive_until(*sender, at_sender, [&](const Received& r) { return r.confirmed(id) >= 2; },
                        deadline_after(1s));
    EXPECT_LE(at_sender.confirmed(id), 2u);
    // Nothing broke: both endpoints still carry fresh messages.
    ASSERT_NO_FATAL_FAILURE(expect_round_trip(*sender, *receiver));
}

TEST_P(TransportConformance, AcknowledgingUnknownTagsIsIgnored) {
    std::unique_ptr<Transport> sender = open(fresh_address());
    std::unique_ptr<Transport> receiver = open(fresh_address());
    // Nothing was delivered to `receiver` yet, so every tag is unknown to it.
    const std::vector<DeliveryTag> unknown{0, 1, 2, 42, 0xDEADBEEF, UINT64_MAX};
    Status acknowledged = receiver->acknowledge(unknown);
    EXPECT_TRUE(acknowledged.ok()) << acknowledged.to_string();
    EXPECT_TRUE(receiver->acknowledge({}).ok());

    Received at_receiver;
    ASSERT_NO_FATAL_FAILURE(expect_round_trip(*sender, *receiver, &at_receiver));
    // Already acknowledged tags are unknown now too.
    acknowledged = receiver->acknowledge(at_receiver.tags());
    EXPECT_TRUE(acknowledged.ok()) << acknowledged.to_string();
    ASSERT_NO_FATAL_FAILURE(expect_round_trip(*sender, *receiver));
}

TEST_P(TransportConformance, UnacknowledgedIsRedeliveredAfterRestart) {
    if (!features().redelivery) GTEST_SKIP() << "the adapter declares no redelivery";
    const Address receiver_address = fresh_address();
    std::unique_ptr<Transport> sender = open(fresh_address());
    std::unique_ptr<Transport> receiver = open(receiver_address);
    Outbox outbox = make_outbox(2, sender->local_address(), receiver_address, {}, "redelivery");
    ASSERT_EQ(send_all(*sender, outbox.messages, patient_deadline()), 2u);
    Received before;
    auto both = [&](const Received& r) { return r.delivered_count.size() == 2; };
    ASSERT_TRUE(receive_until(*receiver, before, both, patient_deadline()));

    // Acknowledge what came first (on a log transport the lower offset, which it can express
    // alone), leave the other one unacknowledged.
    const MessageId acknowledged_id = before.delivered_order.front();
    const MessageId pending_id = acknowledged_id == outbox.ids[0] ? outbox.ids[1] : outbox.ids[0];
    std::vector<DeliveryTag> tags;
    for (std::size_t index = 0; index < before.deliveries.size(); index++) {
        if (before.delivered_order[index] == acknowledged_id) tags.push_back(before.deliveries[index].tag);
    }
    ASSERT_TRUE(receiver->acknowledge(tags).ok());
    if (harness().confirms_on_acknowledge()) {
        Received at_sender;
        auto confirmed = [&](const Received& r) { return r.confirmed(acknowledged_id) > 0; };
        ASSERT_TRUE(receive_until(*sender, at_sender, confirmed, patient_deadline()));
    }

    receiver->close();
    receiver.reset();
    receiver = open(receiver_address);  // the restart
    Received after;
    ASSERT_TRUE(receive_until(*receiver, after, [&](const Received& r) { return r.delivered(pending_id) > 0; },
                              patient_deadline(), {.acknowledge = true}))
        << "the unacknowledged delivery was not delivered again after the restart";
    receive_for(*receiver, after, 300ms, {.acknowledge = true});
    EXPECT_EQ(after.delivered(acknowledged_id), 0u) << "an acknowledged delivery came again";
}

TEST_P(TransportConformance, CloseEndsABlockedReceive) {
    std::unique_ptr<Transport> receiver = open(fresh_address());
    std::unique_ptr<Transport> other = open(fresh_address());
    auto blocked = std::async(std::launch::async, [&] {
        ReceiveBatch batch;
        Status status = receiver->receive(batch, 16, /*timeout_us=*/5'000'000);
        return std::make_pair(status, SteadyClock::now());
    });
    // Give the receive time to block; closing before it blocks must work just the same.
    std::this_thread::sleep_for(100ms);
    const SteadyClock::time_point closed_at = SteadyClock::now();
    receiver->close();
    const auto [status, returned_at] = blocked.get();
    EXPECT_EQ(status.code(), StatusCode::closed) << status.to_string();
    EXPECT_LT(returned_at - closed_at, 2500ms) << "receive did not return promptly on close";

    // After close: receive and send fail with closed (transport.h); acknowledge fails with closed
    // or does nothing; close, wake and the destructor are harmless.
    ReceiveBatch batch;
    EXPECT_EQ(receiver->receive(batch, 16, 0).code(), StatusCode::closed);
    Outbox outbox = make_outbox(1, receiver->local_address(), other->local_address());
    Result<std::size_t> sent = receiver->send(outbox.messages);
    EXPECT_FALSE(sent.ok()) << "send after close accepted " << (sent.ok() ? *sent : 0);
    if (!sent.ok()) {
        EXPECT_EQ(sent.status().code(), StatusCode::closed);
    }
    const DeliveryTag tag = 1;
    Status acknowledged = receiver->acknowledge({&tag, 1});
    if (!acknowledged.ok()) {
        EXPECT_EQ(acknowledged.code(), StatusCode::closed);
    }
    receiver->close();
    receiver->wake();
    receiver.reset();
    Received at_other;
    receive_for(*other, at_other, 200ms);
    EXPECT_TRUE(at_other.deliveries.empty()) << "a send refused after close was delivered";
}

TEST_P(TransportConformance, WakeEndsABlockedReceive) {
    std::unique_ptr<Transport> receiver = open(fresh_address());
    auto blocked = std::async(std::launch::async, [&] {
        ReceiveBatch batch;
        Status status = receiver->receive(batch, 16, /*timeout_us=*/5'000'000);
        return std::make_tuple(status, batch.empty(), SteadyClock::now());
    });
    std::this_thread::sleep_for(100ms);  // let it block (an early wake must work too)
    const SteadyClock::time_point woken_at = SteadyClock::now();
    // A wake that lands before receive blocks may be lost on some transports: repeat until the
    // receive returns (bounded by the receive's own timeout).
    do {
        receiver->wake();
    } while (blocked.wait_for(50ms) != std::future_status::ready);
    const auto [status, empty, returned_at] = blocked.get();
    EXPECT_TRUE(status.ok()) << status.to_string();
    EXPECT_TRUE(empty);
    EXPECT_LT(returned_at - woken_at, 2500ms) << "receive did not return promptly on wake";

    // The endpoint still works after a wake.
    std::unique_ptr<Transport> sender = open(fresh_address());
    ASSERT_NO_FATAL_FAILURE(expect_round_trip(*sender, *receiver));
}

TEST_P(TransportConformance, ManyConcurrentSenders) {
    constexpr std::size_t sender_count = 8;
    constexpr std::size_t messages_per_sender = 250;
    std::unique_ptr<Transport> receiver = open(fresh_address());
    std::vector<std::unique_ptr<Transport>> senders;
    std::vector<Outbox> outboxes;
    for (std::size_t index = 0; index < sender_count; index++) {
        senders.push_back(open(fresh_address()));
        outboxes.push_back(make_outbox(messages_per_sender, senders.back()->local_address(),
                                       receiver->local_address()));
    }
    // Each sender endpoint is used by its own thread only (the Transport threading rule).
    const Deadline deadline = deadline_after(2 * harness().patience());
    std::vector<std::size_t> accepted(sender_count, 0);
    std::vector<std::size_t> confirmed(sender_count, 0);
    std::vector<std::thread> threads;
    for (std::size_t index = 0; index < sender_count; index++) {
        threads.emplace_back([&, index] {
            accepted[index] = send_all(*senders[index], outboxes[index].messages, deadline);
            Received at_sender;
            auto all_confirmed = [](const Received& r) { return r.confirmed_count.size() == messages_per_sender; };
            (void)receive_until(*senders[index], at_sender, all_confirmed, deadline);
            confirmed[index] = at_sender.confirmed_count.size();
        });
    }
    Received at_receiver;
    auto all_arrived = [](const Received& r) { return r.delivered_count.size() == sender_count * messages_per_sender; };
    const bool arrived = receive_until(*receiver, at_receiver, all_arrived, deadline, {.acknowledge = true});
    for (std::thread& thread : threads) thread.join();

    EXPECT_TRUE(arrived) << at_receiver.delivered_count.size() << " distinct ids arrived";
    for (std::size_t index = 0; index < sender_count; index++) {
        EXPECT_EQ(accepted[index], messages_per_sender) << "sender " << index;
        EXPECT_EQ(confirmed[index], messages_per_sender) << "sender " << index;
        const std::size_t missing = static_cast<std::size_t>(std::count_if(
            outboxes[index].ids.begin(), outboxes[index].ids.end(),
            [&](const MessageId& id) { return at_receiver.delivered(id) == 0; }));
        EXPECT_EQ(missing, 0u) << "sender " << index;
    }
}

TEST_P(TransportConformance, OneSendersOrderIsKept) {
    if (!features().ordering) GTEST_SKIP() << "the adapter declares no ordering";
    constexpr std::size_t message_count = 200;
    constexpr std::size_t send_batch_max = 20;  // several send calls, not one
    std::unique_ptr<Transport> sender = open(fresh_address());
    std::unique_ptr<Transport> receiver = open(fresh_address());
    Outbox outbox = make_outbox(message_count, sender->local_address(), receiver->local_address(), {}, "ordering");
    const std::span<const OutgoingMessage> messages{outbox.messages};
    for (std::size_t offset = 0; offset < message_count; offset += send_batch_max) {
        ASSERT_EQ(send_all(*sender, messages.subspan(offset, send_batch_max), patient_deadline()), send_batch_max);
    }
    Received at_receiver;
    auto all_arrived = [&](const Received& r) { return r.delivered_count.size() == message_count; };
    ASSERT_TRUE(receive_until(*receiver, at_receiver, all_arrived, patient_deadline(),
                              {.deliveries_max = 64, .acknowledge = true}));
    // A duplicate may come late; the first arrival of each id must follow the send order.
    std::vector<MessageId> first_arrivals;
    std::set<MessageId> seen;
    for (const MessageId& id : at_receiver.delivered_order) {
        if (seen.insert(id).second) first_arrivals.push_back(id);
    }
    EXPECT_EQ(first_arrivals, outbox.ids);
}

TEST_P(TransportConformance, MessagesWaitForTheReceiverToOpen) {
    if (!features().persistence) GTEST_SKIP() << "the adapter declares no persistence";
    constexpr std::size_t message_count = 3;
    const Address receiver_address = fresh_address();
    std::unique_ptr<Transport> sender = open(fresh_address());
    Outbox outbox = make_outbox(message_count, sender->local_address(), receiver_address);
    ASSERT_EQ(send_all(*sender, outbox.messages, patient_deadline()), message_count);

    std::unique_ptr<Transport> receiver = open(receiver_address);  // opens after the sends
    Received at_receiver;
    auto all_arrived = [&](const Received& r) { return r.delivered_count.size() == message_count; };
    ASSERT_TRUE(receive_until(*receiver, at_receiver, all_arrived, patient_deadline(), {.acknowledge = true}));
    for (std::size_t index = 0; index < message_count; index++) {
        EXPECT_GE(at_receiver.delivered(outbox.ids[index]), 1u);
    }
    Received at_sender;
    auto all_confirmed = [&](const Received& r) { return r.confirmed_count.size() == message_count; };
    ASSERT_TRUE(receive_until(*sender, at_sender, all_confirmed, patient_deadline()));
}

TEST_P(TransportConformance, IdleReceiveTimesOutEmpty) {
    std::unique_ptr<Transport> receiver = open(fresh_address());
    ReceiveBatch batch;
    const SteadyClock::time_point started = SteadyClock::now();
    Status status = receiver->receive(batch, 16, /*timeout_us=*/100'000);
    EXPECT_TRUE(status.ok()) << status.to_string();
    EXPECT_TRUE(batch.empty());
    status = receiver->receive(batch, 16, /*timeout_us=*/0);  // a poll: returns at once
    EXPECT_TRUE(status.ok()) << status.to_string();
    EXPECT_TRUE(batch.empty());
    // Only a sanity bound: these machines are too noisy for timing assertions.
    EXPECT_LT(SteadyClock::now() - started, harness().patience());
}

}  // namespace choreo::conformance
