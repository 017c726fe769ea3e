// choreo/envelope.h — one message, exactly the map of design §5 / docs/protocol.md.
//
//   Envelope envelope;
//   envelope.id = ids.next();
//   envelope.kind = "ping";
//   envelope.to = Address::anycast("pong");
//   Result<Bytes> encoded = encode_envelope(envelope, limits);      // choreo/codec.h
#pragma once

#include <map>
#include <string>

#include "choreo/address.h"
#include "choreo/bytes.h"
#include "choreo/clock.h"
#include "choreo/ids.h"

namespace choreo {

using Headers = std::map<std::string, std::string>;

struct Envelope {
    static constexpr int format_version = 1;

    MessageId id;              // unique per message; retransmissions keep it
    std::string kind;          // what the message means, e.g. "payment-completed"
    Address from;              // where replies go: the sender's unicast address (choreo always
                               // sends one); empty for anonymous senders
    Address to;                // anycast `service` or unicast `service/instance`
    std::string correlation;   // ties together all messages of one conversation (saga, execution)
    std::string causation;     // id of the message whose handling emitted this one
    std::string promise;       // the promise this message settles or awaits, if any
    TimeMs sent_at_ms = 0;     // stamped once when first committed; the dedup horizon compares it
    TimeMs deadline_ms = 0;    // 0 = none
    Headers headers;
    Bytes body;

    friend bool operator==(const Envelope&, const Envelope&) = default;
};

}  // namespace choreo
