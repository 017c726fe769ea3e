// choreo/transport/sim_transport.h — a simulated network for deterministic simulation testing.
//
// Like the memory transport (a send is confirmed when the receiver acknowledges it; messages wait
// for a detached receiver; unacknowledged deliveries come again after a restart; anycast sends
// are pinned by route()), but the network misbehaves on purpose, and every choice it makes comes
// from one seeded Random and one virtual Clock, so a run is reproduced exactly by its seed:
//   - a message copy is dropped, duplicated, and delayed by a uniform random time, which also
//     reorders messages (a later send may arrive first);
//   - confirmations (acks travelling back) are dropped and delayed the same way;
//   - partitions cut two services apart in both directions until heal();
//   - replay_old() puts copies of messages delivered long ago back on the wire (late replays).
// Probabilities are integer parts per thousand: no floating point in any decision.
//
//   choreo::ManualClock clock{0};
//   choreo::SeededRandom random{seed};
//   choreo::SimNetwork network{clock, random};
//   network.set_faults({.drop_per_mille = 50, .duplicate_per_mille = 50, .delay_ms_max = 200});
//   choreo::SimTransport orders{network, choreo::Address::unicast("orders", "1")};
//   ... run services with run_once(0); advance the clock to network.next_due_ms() when idle ...
//
// receive() returns what is due at the clock's time; with a timeout it waits in real time (for
// other threads' sends, wake or close), which a simulation never asks for (it runs every service
// with timeouts of 0 on one thread). Thread-safe, so the conformance suite runs on it too.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "choreo/clock.h"
#include "choreo/random.h"
#include "choreo/transport.h"

namespace choreo {

struct SimFaults {
    std::uint32_t drop_per_mille = 0;        // each message copy
    std::uint32_t duplicate_per_mille = 0;   // each send: a second copy (with its own delay)
    std::uint32_t ack_drop_per_mille = 0;    // each confirmation
    TimeMs delay_ms_min = 0;                 // each copy and confirmation: uniform in [min, max]
    TimeMs delay_ms_max = 0;
};

struct SimNetworkStats {
    std::uint64_t sent = 0;
    std::uint64_t dropped = 0;
    std::uint64_t duplicated = 0;
    std::uint64_t delivered = 0;
    std::uint64_t redelivered = 0;       // unacknowledged deliveries put back by a close
    std::uint64_t acks_dropped = 0;
    std::uint64_t partitioned = 0;       // copies and confirmations cut by a partition
    std::uint64_t replayed = 0;          // old messages put back by replay_old
};

class SimNetwork {
public:
    struct Options {
        std::size_t queue_messages_max = 100'000;   // per address: send() accepts fewer beyond it
        std::size_t replay_history_max = 10'000;    // delivered messages kept for replay_old
    };
    SimNetwork(const Clock& clock, Random& random) : SimNetwork(clock, random, Options{}) {}
    SimNetwork(const Clock& clock, Random& random, Options options);
    SimNetwork(const SimNetwork&) = delete;
    SimNetwork& operator=(const SimNetwork&) = delete;

    void set_faults(const SimFaults& faults);
    SimFaults faults() const;
    // Cuts every message and confirmation between the two services (both ways) until heal().
    void partition(std::string_view service_a, std::string_view service_b);
    void heal();

    // Puts up to `count` copies of messages delivered earlier back on the wire, chosen at random
    // among the oldest half of what was delivered. Returns how many.
    std::size_t replay_old(std::size_t count);

    // The earliest time something in transit becomes due (nullopt: nothing in transit).
    std::optional<TimeMs> next_due_ms() const;
    // Copies in transit or waiting in a mailbox, delivered-but-unacknowledged included.
    std::size_t in_flight() const;
    SimNetworkStats stats() const;

private:
    friend class SimTransport;
    struct Parcel {
        TimeMs due_ms = 0;
        std::uint64_t sequence = 0;  // ties broken in send order: deterministic
        MessageId id;
        Address from;
        Bytes bytes;
    };
    struct Confirmation {
        TimeMs due_ms = 0;
        std::uint64_t sequence = 0;
        MessageId id;
    };
    struct Mailbox {
        std::map<std::pair<TimeMs, std::uint64_t>, Parcel> queued;  // by (due, sequence)
        std::map<DeliveryTag, Parcel> in_flight;
        std::map<std::pair<TimeMs, std::uint64_t>, Confirmation> confirmations;
        bool attached = false;
        bool wake = false;
    };

    bool cut(const std::string& service_a, const std::string& service_b) const;
    TimeMs delay_locked();
    bool chance_locked(std::uint32_t per_mille);
    void post_locked(const std::string& address, Parcel parcel);
    void confirm_locked(const Address& to, const MessageId& id, const std::string& from_service);
    std::string destination_locked(const OutgoingMessage& message);
    void attach_locked(const Address& self);

    const Clock& clock_;
    Random& random_;
    Options options_;
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    SimFaults faults_;
    std::set<std::pair<std::string, std::string>> partitions_;
    std::map<std::string, Mailbox> mailboxes_;                   // by unicast address
    std::map<std::string, std::vector<std::string>> instances_;  // service -> instances, in join order
    std::map<std::string, std::size_t> next_instance_;
    std::map<std::string, std::vector<Parcel>> unpinned_;        // anycast, before any instance joined
    std::vector<std::pair<std::string, Parcel>> delivered_;      // for replay_old (bounded)
    std::uint64_t next_sequence_ = 1;
    DeliveryTag next_tag_ = 1;
    SimNetworkStats stats_;
};

class SimTransport final : public Transport {
public:
    // Attaches to `self` (unicast); asserts no other open endpoint holds it.
    SimTransport(SimNetwork& network, Address self);
    ~SimTransport() override;
    SimTransport(const SimTransport&) = delete;
    SimTransport& operator=(const SimTransport&) = delete;

    Features features() const override {
        return {.ordering = false, .persistence = true, .consumer_groups = false, .redelivery = true};
    }
    Address local_address() const override { return self_; }
    std::string route(const Address& to) override;
    Result<std::size_t> send(std::span<const OutgoingMessage> batch) override;
    Status receive(ReceiveBatch& out, std::size_t deliveries_max, std::int64_t timeout_us) override;
    Status acknowledge(std::span<const DeliveryTag> tags) override;
    void wake() override;
    void close() override;

private:
    bool ready_locked(bool want_deliveries) const;
    void take_locked(ReceiveBatch& out, std::size_t deliveries_max);

    SimNetwork& network_;
    Address self_;
    std::string key_;  // self_.to_string()
    bool closed_ = false;
};

}  // namespace choreo
