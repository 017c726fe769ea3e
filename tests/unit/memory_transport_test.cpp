// tests/unit/memory_transport_test.cpp — MemoryTransport runs the transport conformance suite,
// plus what only it has: a bounded queue per address, round-robin anycast pinning, and anycast
// that waits for the first instance of a service.
#include "choreo/transport/memory_transport.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>

#include "conformance/transport_conformance.h"

namespace choreo {
namespace {

using namespace std::chrono_literals;
using conformance::deadline_after;
using conformance::fresh_address;
using conformance::fresh_service_name;
using conformance::make_outbox;
using conformance::Outbox;
using conformance::PollOptions;
using conformance::Received;
using conformance::receive_once;
using conformance::receive_until;
using conformance::send_all;
using conformance::TransportConformance;

constexpr std::chrono::seconds patience{10};

// One network per test, so tests share nothing.
class MemoryHarness final : public conformance::TransportHarness {
public:
    Transport::Features features() const override {
        return {.ordering = true, .persistence = true, .consumer_groups = false, .redelivery = true};
    }
    std::unique_ptr<Transport> open(const Address& self) override {
        return std::make_unique<MemoryTransport>(network_, self);
    }

private:
    MemoryNetwork network_;
};

INSTANTIATE_TEST_SUITE_P(Memory, TransportConformance,
                         ::testing::Values(conformance::TransportHarnessFactory{
                             "memory", [] { return std::make_unique<MemoryHarness>(); }}),
                         conformance::harness_name);

auto delivered_all(const Outbox& outbox) {
    return [&outbox](const Received& received) {
        for (const MessageId& id : outbox.ids) {
            if (received.delivered(id) == 0) return false;
        }
        return true;
    };
}

TEST(MemoryTransport, BackpressureAtQueueMessagesMax) {
    MemoryNetwork network{MemoryNetwork::Options{.queue_messages_max = 4}};
    MemoryTransport sender{network, fresh_address()};
    MemoryTransport receiver{network, fresh_address()};
    Outbox outbox = make_outbox(10, sender.local_address(), receiver.local_address());
    const std::span<const OutgoingMessage> messages{outbox.messages};

    Result<std::size_t> accepted = sender.send(messages);
    ASSERT_TRUE(accepted.ok());
    EXPECT_EQ(*accepted, 4u) << "the queue holds queue_messages_max";
    EXPECT_EQ(network.pending(receiver.local_address()), 4u);
    accepted = sender.send(messages.subspan(4));
    ASSERT_TRUE(accepted.ok()) << "backpressure is fewer accepted, not an error";
    EXPECT_EQ(*accepted, 0u);

    // Drained (received and acknowledged), the address accepts again.
    Received at_receiver;
    ASSERT_TRUE(receive_once(receiver, at_receiver, {.deliveries_max = 4, .acknowledge = true}).ok());
    EXPECT_EQ(at_receiver.deliveries.size(), 4u);
    EXPECT_EQ(network.pending(receiver.local_address()), 0u);
    accepted = sender.send(messages.subspan(4));
    ASSERT_TRUE(accepted.ok());
    EXPECT_EQ(*accepted, 4u);

    // The rest goes through as the receiver keeps draining; nothing is lost or reordered.
    std::size_t sent = 8;
    const conformance::Deadline deadline = deadline_after(patience);
    while (sent < outbox.messages.size() && std::chrono::steady_clock::now() < deadline) {
        ASSERT_TRUE(receive_once(receiver, at_receiver, {.deliveries_max = 3, .acknowledge = true}).ok());
        accepted = sender.send(messages.subspan(sent));
        ASSERT_TRUE(accepted.ok());
        sent += *accepted;
    }
    ASSERT_EQ(sent, outbox.messages.size());
    ASSERT_TRUE(receive_until(receiver, at_receiver, delivered_all(outbox), deadline_after(patience),
                              {.acknowledge = true}));
    EXPECT_EQ(at_receiver.delivered_order, outbox.ids);
}

TEST(MemoryTransport, AnycastRoundRobinsAcrossInstances) {
    MemoryNetwork network;
    const std::string service = fresh_service_name();
    MemoryTransport one{network, Address::unicast(service, "1")};
    MemoryTransport two{network, Address::unicast(service, "2")};
    MemoryTransport sender{network, fresh_address()};
    const Address anycast = Address::anycast(service);

    std::vector<std::string> routes;
    for (int index = 0; index < 4; index++) routes.push_back(sender.route(anycast));
    EXPECT_EQ(std::set<std::string>(routes.begin(), routes.end()), (std::set<std::string>{"1", "2"}));
    EXPECT_NE(routes[0], routes[1]);
    EXPECT_EQ(routes[2], routes[0]);
    EXPECT_EQ(routes[3], routes[1]);

    Outbox outbox = make_outbox(4, sender.local_address(), anycast);
    for (std::size_t index = 0; index < 4; index++) outbox.messages[index].route = routes[index];
    ASSERT_EQ(send_all(sender, outbox.messages, deadline_after(patience)), 4u);
    // A retransmission of message 0 keeps its pin (design §4.6).
    ASSERT_EQ(send_all(sender, std::span(outbox.messages).first(1), deadline_after(patience)), 1u);

    Received at_one;
    Received at_two;
    auto three = [](const Received& r) { return r.deliveries.size() == 3; };
    auto two_deliveries = [](const Received& r) { return r.deliveries.size() == 2; };
    MemoryTransport& first = routes[0] == "1" ? one : two;
    MemoryTransport& second = routes[0] == "1" ? two : one;
    Received& at_first = routes[0] == "1" ? at_one : at_two;
    Received& at_second = routes[0] == "1" ? at_two : at_one;
    ASSERT_TRUE(receive_until(first, at_first, three, deadline_after(patience), {.acknowledge = true}));
    ASSERT_TRUE(receive_until(second, at_second, two_deliveries, deadline_after(patience), {.acknowledge = true}));
    EXPECT_EQ(at_first.delivered_order, (std::vector<MessageId>{outbox.ids[0], outbox.ids[2], outbox.ids[0]}));
    EXPECT_EQ(at_second.delivered_order, (std::vector<MessageId>{outbox.ids[1], outbox.ids[3]}));
}

TEST(MemoryTransport, UnpinnedAnycastWaitsForTheFirstInstance) {
    MemoryNetwork network;
    const std::string service = fresh_service_name();
    const Address anycast = Address::anycast(service);
    MemoryTransport sender{network, fresh_address()};
    EXPECT_EQ(sender.route(anycast), "") << "no instance ever attached: nothing to pin to";

    Outbox outbox = make_outbox(3, sender.local_address(), anycast);
    ASSERT_EQ(send_all(sender, outbox.messages, deadline_after(patience)), 3u);
    Received at_sender;
    ASSERT_TRUE(receive_once(sender, at_sender).ok());
    // Nothing is delivered or confirmed while no instance of the service exists.
    EXPECT_TRUE(at_sender.deliveries.empty());
    EXPECT_TRUE(at_sender.confirmed_count.empty());

    MemoryTransport first{network, Address::unicast(service, "7")};
    MemoryTransport second{network, Address::unicast(service, "8")};
    EXPECT_EQ(sender.route(anycast), "7");
    // The kernel stored an empty route with these rows, so a retransmission is unpinned too. It
    // must meet the first copy at the same instance (design §4.6), even when another instance
    // asks first: unpinned messages belong to the first instance that attached.
    ASSERT_EQ(send_all(sender, std::span(outbox.messages).first(1), deadline_after(patience)), 1u);
    Received at_second;
    ASSERT_TRUE(receive_once(second, at_second, {.acknowledge = true}).ok());
    EXPECT_TRUE(at_second.deliveries.empty()) << "an unpinned message went to a later instance";

    Received at_first;
    auto four = [](const Received& r) { return r.deliveries.size() == 4; };
    ASSERT_TRUE(receive_until(first, at_first, four, deadline_after(patience), {.acknowledge = true}));
    EXPECT_EQ(at_first.delivered_order,
              (std::vector<MessageId>{outbox.ids[0], outbox.ids[1], outbox.ids[2], outbox.ids[0]}));
    auto all_confirmed = [](const Received& r) { return r.confirmed_count.size() == 3; };
    ASSERT_TRUE(receive_until(sender, at_sender, all_confirmed, deadline_after(patience)));
}

}  // namespace
}  // namespace choreo
