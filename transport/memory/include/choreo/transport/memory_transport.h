// choreo/transport/memory_transport.h — the Transport interface inside one process.
//
// A MemoryNetwork is the shared medium; each MemoryTransport is one endpoint on it, receiving
// on its unicast address `service/instance` and on its service's anycast address. Semantics
// match the brokerless transports: a send is confirmed to its sender only when the receiver
// acknowledges it (after the receiver's commit). Messages wait in the network while no
// endpoint is attached (persistence), and deliveries not acknowledged when an endpoint closes
// are delivered again to the next endpoint at that address (redelivery). Anycast sends are
// pinned to one instance by route(), round robin among the instances that ever attached; an
// anycast send without a route (chosen before any instance existed) goes to the first instance
// that ever attached to the service, waiting for it if there is none yet, so that all copies of
// one message meet the same instance (design §4.6).
//
//   choreo::MemoryNetwork network;
//   choreo::MemoryTransport orders{network, choreo::Address::unicast("orders", "1")};
//   choreo::MemoryTransport billing{network, choreo::Address::unicast("billing", "1")};
//
// Thread-safe: every endpoint may be used from its own thread. The network must outlive its
// endpoints.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>

#include "choreo/transport.h"

namespace choreo {

class MemoryNetwork {
public:
    struct Options {
        std::size_t queue_messages_max = 100'000;  // per address, queued + unacknowledged: send() accepts fewer beyond it
    };
    MemoryNetwork() : MemoryNetwork(Options{}) {}
    explicit MemoryNetwork(Options options) : options_(options) {}
    MemoryNetwork(const MemoryNetwork&) = delete;
    MemoryNetwork& operator=(const MemoryNetwork&) = delete;

    // Messages waiting (queued or delivered but unacknowledged) for a unicast address.
    std::size_t pending(const Address& address) const;

private:
    friend class MemoryTransport;
    struct Parcel {
        MessageId id;
        Address from;
        Bytes bytes;
    };
    struct Mailbox {
        std::deque<Parcel> queued;
        std::map<DeliveryTag, Parcel> in_flight;
        std::deque<MessageId> confirmations;
        bool attached = false;
        bool wake = false;
    };

    Options options_;
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::map<std::string, Mailbox> mailboxes_;             // by unicast address
    std::map<std::string, std::deque<Parcel>> unpinned_;   // anycast to a service no instance ever joined
    std::map<std::string, std::vector<std::string>> instances_;  // service -> instances seen
    std::map<std::string, std::size_t> next_instance_;
    DeliveryTag next_tag_ = 1;
};

class MemoryTransport final : public Transport {
public:
    // Attaches to `self` (a unicast address); asserts no other open endpoint holds it.
    MemoryTransport(MemoryNetwork& network, Address self);
    ~MemoryTransport() override;
    MemoryTransport(const MemoryTransport&) = delete;
    MemoryTransport& operator=(const MemoryTransport&) = delete;

    Features features() const override {
        return {.ordering = true, .persistence = true, .consumer_groups = false, .redelivery = true};
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

    MemoryNetwork& network_;
    const Address self_;
    const std::string key_;
    bool closed_ = false;  // guarded by network_.mutex_
};

}  // namespace choreo
