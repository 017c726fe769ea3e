// choreo/transport.h — the messaging interface: send a batch, receive a batch, acknowledge.
//
// A Transport moves encoded envelopes (bytes) between addresses. It may drop, duplicate,
// reorder and delay; the runtime above it makes that survivable (dedup, outbox retransmission).
// It carries bytes, not Envelopes, so input that does not decode can be dead-lettered whole.
//
// Threading: send, receive, acknowledge, route and features are called by one runtime thread.
// wake() and close() may be called from any thread. The caller owns the Transport and keeps it
// alive longer than every Service using it.
//
//   OutgoingMessage message{id, to, route, key, bytes};
//   Result<std::size_t> accepted = transport.send({&message, 1});
//   ReceiveBatch batch;
//   Status received = transport.receive(batch, 256, /*timeout_us=*/1000);
//   ... commit what the deliveries did ...
//   Status acked = transport.acknowledge(tags_of(batch.deliveries));
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "choreo/address.h"
#include "choreo/bytes.h"
#include "choreo/ids.h"
#include "choreo/status.h"

namespace choreo {

// Names one delivery for acknowledge(); meaningful only to the transport that issued it.
using DeliveryTag = std::uint64_t;

struct StreamPosition {
    std::string stream;        // e.g. "<topic>/<partition>"
    std::int64_t offset = 0;   // the offset of this delivery
};

struct Delivery {
    DeliveryTag tag = 0;
    Bytes bytes;
    std::optional<StreamPosition> position;  // set by transports with offsets (Kafka)
    // Not empty: the transport received input it could not frame (a wrong version frame, a
    // missing id frame, ...). `bytes` holds what arrived; the runtime dead-letters it with
    // reason `malformed_frame` and this detail, then acknowledges the tag.
    std::string malformed{};
};

// A send the transport refused for good (it will never go out): the runtime dead-letters its
// outbox row with this reason instead of retransmitting it.
struct Undeliverable {
    MessageId id;
    std::string reason;  // stable: "message_too_large", "no_route"
    std::string detail;
};

struct ReceiveBatch {
    std::vector<Delivery> deliveries;
    // Ids of messages this endpoint sent that are now confirmed: the receiver committed them
    // (brokerless transports) or the broker stored them (Kafka). Their outbox rows may settle.
    std::vector<MessageId> confirmed;
    // Sends accepted earlier that the transport will never deliver (see Undeliverable).
    std::vector<Undeliverable> undeliverable;

    bool empty() const { return deliveries.empty() && confirmed.empty() && undeliverable.empty(); }
    void clear() {
        deliveries.clear();
        confirmed.clear();
        undeliverable.clear();
    }
};

// One message to send. `bytes` is only borrowed for the duration of the send call.
struct OutgoingMessage {
    MessageId id;
    Address to;
    std::string route;  // pinned instance for an anycast `to` (from route()), or empty
    std::string key;    // partition key, e.g. the correlation id
    ByteView bytes;
};

class Transport {
public:
    struct Features {
        bool ordering = false;         // one sender's messages to one address arrive in order
        bool persistence = false;      // messages sent while no receiver runs are kept for it
        bool consumer_groups = false;  // instances of a service share its input among themselves
        bool redelivery = false;       // unacknowledged deliveries come again after a restart
    };

    virtual ~Transport() = default;
    virtual Features features() const = 0;
    // The unicast address this endpoint receives on (its own `service/instance`).
    virtual Address local_address() const = 0;

    // Chooses the instance that an anycast send to `to` is pinned to, for every retransmission
    // too (design §4.6). Called for anycast addresses only. Empty: the transport needs no pin
    // (the instances share a store, Kafka keys pick the partition) or knows no instance yet and
    // pins on its own.
    virtual std::string route(const Address& to) = 0;

    // Hands messages to the transport in order; returns how many of the first ones it accepted.
    // Fewer than all means backpressure: offer the rest again later. A message is not delivered
    // or confirmed just because it was accepted. A message the transport can never deliver (too
    // large, no route) is accepted and reported by a later receive in `undeliverable`, so one
    // bad message does not hold up the rest. Fails with closed after close().
    virtual Result<std::size_t> send(std::span<const OutgoingMessage> batch) = 0;

    // Appends to `out` up to `deliveries_max` deliveries and any confirmations. Waits up to
    // timeout_us for the first one, then returns what is ready without waiting more. With
    // deliveries_max 0 it waits for confirmations only (the runtime under backpressure). Returns
    // ok with nothing on timeout or wake(); fails with closed after close().
    virtual Status receive(ReceiveBatch& out, std::size_t deliveries_max,
                           std::int64_t timeout_us) = 0;

    // Acknowledges deliveries whose effects are committed. An unacknowledged delivery may be
    // delivered again (after a restart on transports with redelivery). Unknown tags are ignored.
    virtual Status acknowledge(std::span<const DeliveryTag> tags) = 0;

    // Makes a blocked receive return now. Any thread.
    virtual void wake() = 0;
    // Stops the endpoint: a blocked receive returns closed; unacknowledged deliveries are left
    // for redelivery. Idempotent. Any thread.
    virtual void close() = 0;
};

}  // namespace choreo
