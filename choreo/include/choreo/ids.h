// choreo/ids.h — 128-bit message ids, rendered as text (the 36-character UUID form).
//
// External ids are random and time-ordered (UUIDv7): IdGenerator draws them from an injected
// Clock and Random. Derived ids are deterministic: the n-th message emitted while handling
// message m has id derive_id(m.id, n), so replaying a step re-emits the same ids and downstream
// dedup drops them (design §4.3). Derived ids carry UUID version 8.
//
//   IdGenerator ids{clock, random};
//   MessageId first = ids.next();
//   MessageId reply = derive_id(first, 0);
//   std::string text = reply.to_string();          // "0190c2a4-...-..."
//   Result<MessageId> parsed = MessageId::parse(text);
#pragma once

#include <array>
#include <compare>
#include <optional>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "choreo/bytes.h"
#include "choreo/clock.h"
#include "choreo/random.h"
#include "choreo/status.h"

namespace choreo {

class MessageId {
public:
    static constexpr std::size_t text_length = 36;

    constexpr MessageId() = default;  // the nil id, never a valid message id
    constexpr MessageId(std::uint64_t high, std::uint64_t low) : high_(high), low_(low) {}

    // Accepts the canonical 8-4-4-4-12 hex form, either case. Rejects the nil id.
    static Result<MessageId> parse(std::string_view text);

    std::string to_string() const;  // lowercase canonical form
    // The 16 bytes in network order (as UUID bytes are written): the binary form the SQLite
    // store keys rows by (so byte order is id order) and the ZeroMQ framing's id frames carry.
    std::array<std::uint8_t, 16> to_bytes() const;
    // The id of exactly 16 such bytes; nothing for any other length. May be nil.
    static std::optional<MessageId> from_bytes(ByteView bytes);
    bool is_nil() const { return high_ == 0 && low_ == 0; }
    std::uint64_t high() const { return high_; }
    std::uint64_t low() const { return low_; }
    int version() const { return static_cast<int>((high_ >> 12) & 0xF); }
    // For UUIDv7 ids: the millisecond timestamp in the top 48 bits.
    TimeMs timestamp_ms() const { return static_cast<TimeMs>(high_ >> 16); }

    friend constexpr auto operator<=>(const MessageId&, const MessageId&) = default;

private:
    std::uint64_t high_ = 0;
    std::uint64_t low_ = 0;
};

// Deterministic id of the `position`-th thing derived from `parent` (design §4.3).
MessageId derive_id(const MessageId& parent, std::uint64_t position);

// Deterministic id naming a byte string (used to key dead letters of undecodable input).
MessageId content_id(ByteView bytes);

// UUIDv7 generator: 48-bit millisecond timestamp, then random bits; strictly increasing within
// one generator even when the clock stands still. Single-threaded.
class IdGenerator {
public:
    IdGenerator(const Clock& clock, Random& random) : clock_(clock), random_(random) {}
    MessageId next();

private:
    const Clock& clock_;
    Random& random_;
    TimeMs last_ms_ = -1;
    std::uint64_t last_counter_high_ = 0;  // 12 bits after the version nibble
    std::uint64_t last_counter_low_ = 0;   // 62 bits after the variant
};

struct MessageIdHash {
    std::size_t operator()(const MessageId& id) const noexcept {
        return static_cast<std::size_t>(id.high() ^ (id.low() * 0x9E3779B97F4A7C15ULL));
    }
};

}  // namespace choreo
