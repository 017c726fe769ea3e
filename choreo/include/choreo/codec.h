// choreo/codec.h — the envelope as msgpack bytes (docs/protocol.md).
//
// Decoding reads untrusted input: it never crashes, never reads out of bounds, and every way
// the input can be wrong has its own reason name (the Status reason), listed in decode_error.
//
//   Result<Bytes> bytes = encode_envelope(envelope, limits);
//   Result<Envelope> back = decode_envelope(*bytes, limits);
//   if (!back.ok() && back.status().reason() == decode_error::missing_key) { ... }
#pragma once

#include <optional>
#include <string_view>

#include "choreo/bytes.h"
#include "choreo/envelope.h"
#include "choreo/limits.h"
#include "choreo/status.h"

namespace choreo {

namespace decode_error {
inline constexpr std::string_view too_large = "too_large";          // over message_bytes_max
inline constexpr std::string_view truncated = "truncated";          // input ends inside a value
inline constexpr std::string_view wrong_type = "wrong_type";        // a value of the wrong type
inline constexpr std::string_view missing_key = "missing_key";      // a required key is absent
inline constexpr std::string_view too_deep = "too_deep";            // nesting (under unknown keys) over the limit
inline constexpr std::string_view invalid_msgpack = "invalid_msgpack";  // a byte msgpack never uses (0xc1)
inline constexpr std::string_view trailing_bytes = "trailing_bytes";    // bytes after the map
inline constexpr std::string_view duplicate_key = "duplicate_key";
inline constexpr std::string_view too_many_keys = "too_many_keys";  // envelope keys or headers over the limit
inline constexpr std::string_view field_too_long = "field_too_long";
inline constexpr std::string_view unsupported_version = "unsupported_version";
inline constexpr std::string_view invalid_id = "invalid_id";
inline constexpr std::string_view invalid_address = "invalid_address";
inline constexpr std::string_view invalid_value = "invalid_value";  // e.g. a negative sent_at
}  // namespace decode_error

// Fails with invalid_argument/too_large over message_bytes_max, or with a decode_error reason
// when a field breaks a limit (so nothing is sent that the receiver would refuse).
Result<Bytes> encode_envelope(const Envelope& envelope, const MessageLimits& limits);

Result<Envelope> decode_envelope(ByteView bytes, const MessageLimits& limits);

// The `id` of an envelope without decoding the rest: reads the map's keys in order, skipping
// other values, until it meets "id" (choreo's encoder writes it second). For transports that
// must check an id they were told against the one inside. Nothing else is validated: a `nullopt`
// means the bytes are no map or hold no valid id; decode_envelope names the reason.
std::optional<MessageId> peek_envelope_id(ByteView bytes, const MessageLimits& limits);

}  // namespace choreo
