// sim_transport_test.cpp — SimTransport runs the transport conformance suite with its faults
// off, plus what only it has: seeded faults (drops, duplicates, delays that reorder, lost
// confirmations), partitions, late replays, and the same run twice from one seed.
#include "choreo/transport/sim_transport.h"

#include <gtest/gtest.h>

#include <memory>

#include "conformance/transport_conformance.h"

namespace choreo {
namespace {

using conformance::make_outbox;
using conformance::Outbox;

// Faults off and a clock that stands still: everything sent is due at once.
class SimHarness final : public conformance::TransportHarness {
public:
    Transport::Features features() const override {
        return {.ordering = false, .persistence = true, .consumer_groups = false, .redelivery = true};
    }
    std::unique_ptr<Transport> open(const Address& self) override {
        return std::make_unique<SimTransport>(network_, self);
    }

private:
    ManualClock clock_{1'000};
    SeededRandom random_{1};
    SimNetwork network_{clock_, random_};
};

using conformance::TransportConformance;
INSTANTIATE_TEST_SUITE_P(Sim, TransportConformance,
                         ::testing::Values(conformance::TransportHarnessFactory{
                             "sim", [] { return std::make_unique<SimHarness>(); }}),
                         conformance::harness_name);

// ---- what only the simulated network has ---------------------------------------------------

struct World {
    explicit World(std::uint64_t seed, SimFaults faults) : random(seed) { network.set_faults(faults); }
    ManualClock clock{1'000};
    SeededRandom random;
    SimNetwork network{clock, random};
};

// Sends `count` messages a -> b, then advances time until nothing is in transit, receiving and
// acknowledging everything; returns the ids in arrival order and the confirmations a got.
std::pair<std::vector<MessageId>, std::size_t> exchange(World& world, std::size_t count) {
    SimTransport a{world.network, Address::unicast("a", "1")};
    SimTransport b{world.network, Address::unicast("b", "1")};
    Outbox outbox = make_outbox(count, a.local_address(), b.local_address());
    EXPECT_EQ(a.send(outbox.messages).value(), count);
    std::vector<MessageId> arrived;
    std::size_t confirmed = 0;
    for (int round = 0; round < 10'000; round++) {
        ReceiveBatch batch;
        EXPECT_TRUE(b.receive(batch, 1000, 0).ok());
        std::vector<DeliveryTag> tags;
        for (const Delivery& delivery : batch.deliveries) {
            tags.push_back(delivery.tag);
            for (std::size_t index = 0; index < count; index++) {
                if (Bytes(delivery.bytes) == outbox.bytes[index]) arrived.push_back(outbox.ids[index]);
            }
        }
        EXPECT_TRUE(b.acknowledge(tags).ok());
        ReceiveBatch at_a;
        EXPECT_TRUE(a.receive(at_a, 0, 0).ok());
        confirmed += at_a.confirmed.size();
        const std::optional<TimeMs> next = world.network.next_due_ms();
        if (!next) break;
        if (*next > world.clock.now_ms()) world.clock.set_ms(*next);
    }
    return {arrived, confirmed};
}

TEST(SimNetwork, WithoutFaultsEveryMessageArrivesOnceInOrderAndIsConfirmed) {
    World world{7, {}};
    auto [arrived, confirmed] = exchange(world, 50);
    ASSERT_EQ(arrived.size(), 50u);
    EXPECT_TRUE(std::is_sorted(arrived.begin(), arrived.end()));  // UUIDv7 ids: send order
    EXPECT_EQ(confirmed, 50u);
}

TEST(SimNetwork, FaultsDropDuplicateReorderAndLoseConfirmations) {
    World world{7, {.drop_per_mille = 100, .duplicate_per_mille = 200, .ack_drop_per_mille = 100,
                    .delay_ms_min = 0, .delay_ms_max = 500}};
    auto [arrived, confirmed] = exchange(world, 400);
    const SimNetworkStats stats = world.network.stats();
    EXPECT_GT(stats.dropped, 0u);
    EXPECT_GT(stats.duplicated, 0u);
    EXPECT_GT(stats.acks_dropped, 0u);
    EXPECT_EQ(arrived.size(), 400 + stats.duplicated - stats.dropped);
    EXPECT_FALSE(std::is_sorted(arrived.begin(), arrived.end()));  // delays reorder
    EXPECT_EQ(confirmed, arrived.size() - stats.acks_dropped);
}

TEST(SimNetwork, TheSameSeedGivesTheSameRun) {
    const SimFaults faults{.drop_per_mille = 100, .duplicate_per_mille = 100, .ack_drop_per_mille = 50,
                           .delay_ms_min = 1, .delay_ms_max = 300};
    World first{42, faults};
    World second{42, faults};
    World other{43, faults};
    // make_outbox draws fresh ids: compare the runs by arrival positions of each send index.
    auto positions = [](World& world) {
        SimTransport a{world.network, Address::unicast("a", "1")};
        SimTransport b{world.network, Address::unicast("b", "1")};
        std::vector<std::uint8_t> payloads;
        for (std::uint8_t n = 0; n < 100; n++) {
            const Bytes bytes{n};
            const OutgoingMessage message{MessageId{1, n + 1u}, b.local_address(), "", "", bytes};
            EXPECT_EQ(a.send({&message, 1}).value(), 1u);
        }
        for (int round = 0; round < 1000; round++) {
            ReceiveBatch batch;
            EXPECT_TRUE(b.receive(batch, 1000, 0).ok());
            for (const Delivery& delivery : batch.deliveries) payloads.push_back(delivery.bytes[0]);
            const std::optional<TimeMs> next = world.network.next_due_ms();
            if (!next) break;
            if (*next > world.clock.now_ms()) world.clock.set_ms(*next);
        }
        return payloads;
    };
    const std::vector<std::uint8_t> run = positions(first);
    EXPECT_EQ(run, positions(second));
    EXPECT_NE(run, positions(other));
}

TEST(SimNetwork, APartitionCutsBothWaysUntilHealed) {
    World world{3, {}};
    SimTransport a{world.network, Address::unicast("a", "1")};
    SimTransport b{world.network, Address::unicast("b", "1")};
    world.network.partition("a", "b");
    Outbox outbox = make_outbox(3, a.local_address(), b.local_address());
    EXPECT_EQ(a.send(outbox.messages).value(), 3u);  // accepted, then lost on the wire
    ReceiveBatch batch;
    ASSERT_TRUE(b.receive(batch, 10, 0).ok());
    EXPECT_TRUE(batch.deliveries.empty());
    world.network.heal();
    EXPECT_EQ(a.send(outbox.messages).value(), 3u);
    ASSERT_TRUE(b.receive(batch, 10, 0).ok());
    EXPECT_EQ(batch.deliveries.size(), 3u);
    EXPECT_EQ(world.network.stats().partitioned, 3u);
}

TEST(SimNetwork, ReplayOldPutsEarlierMessagesBackOnTheWire) {
    World world{5, {}};
    SimTransport a{world.network, Address::unicast("a", "1")};
    SimTransport b{world.network, Address::unicast("b", "1")};
    Outbox outbox = make_outbox(10, a.local_address(), b.local_address());
    EXPECT_EQ(a.send(outbox.messages).value(), 10u);
    ReceiveBatch first;
    ASSERT_TRUE(b.receive(first, 100, 0).ok());
    ASSERT_EQ(first.deliveries.size(), 10u);
    EXPECT_EQ(world.network.replay_old(4), 4u);
    ReceiveBatch again;
    ASSERT_TRUE(b.receive(again, 100, 0).ok());
    ASSERT_EQ(again.deliveries.size(), 4u);
    for (const Delivery& delivery : again.deliveries) {
        bool among_the_first_half = false;
        for (std::size_t index = 0; index < 5; index++) among_the_first_half |= Bytes(delivery.bytes) == outbox.bytes[index];
        EXPECT_TRUE(among_the_first_half);
    }
}

}  // namespace
}  // namespace choreo
