#include "choreo/ids.h"

#include <array>
#include <span>
#include <string_view>

#include "choreo/detail/sha256.h"

namespace choreo {
namespace {

constexpr std::uint64_t version_mask = 0xFULL << 12;
constexpr std::uint64_t variant_mask = 0x3ULL << 62;
constexpr std::uint64_t variant_rfc = 0x2ULL << 62;
constexpr std::uint64_t counter_low_max = (1ULL << 62) - 1;
constexpr std::uint64_t counter_high_max = (1ULL << 12) - 1;

// Each kind of hashed id starts its input with its own tag, so the two never hash the same
// bytes: the tags differ within their first 16 bytes, and a tag's version lets a later
// derivation coexist with this one.
constexpr std::string_view derive_tag = "choreo.derive.v1";
constexpr std::string_view content_tag = "choreo.content.v1";

ByteView bytes_of_tag(std::string_view tag) {
    return {reinterpret_cast<const std::uint8_t*>(tag.data()), tag.size()};
}

void put_big_endian(std::uint64_t value, std::span<std::uint8_t, 8> out) {
    for (std::size_t index = 0; index < out.size(); index++) {
        out[index] = static_cast<std::uint8_t>(value >> (8 * (7 - index)));
    }
}

std::uint64_t load_big_endian(std::span<const std::uint8_t, 8> bytes) {
    std::uint64_t value = 0;
    for (std::uint8_t byte : bytes) value = (value << 8) | byte;
    return value;
}

MessageId with_version(std::uint64_t high, std::uint64_t low, std::uint64_t version) {
    high = (high & ~version_mask) | (version << 12);
    low = (low & ~variant_mask) | variant_rfc;
    return MessageId{high, low};
}

// The id is the digest's first 128 bits, less the six that carry the version and variant.
MessageId id_of_digest(const detail::Sha256::Digest& digest) {
    const std::span<const std::uint8_t, detail::Sha256::digest_bytes> bytes{digest};
    return with_version(load_big_endian(bytes.first<8>()), load_big_endian(bytes.subspan<8, 8>()),
                        8);
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool is_dash_position(std::size_t index) {
    return index == 8 || index == 13 || index == 18 || index == 23;
}

}  // namespace

Result<MessageId> MessageId::parse(std::string_view text) {
    if (text.size() != text_length) {
        return invalid_argument_error("invalid_id", "an id is 36 characters, got " +
                                                        std::to_string(text.size()));
    }
    std::uint64_t words[2] = {0, 0};
    int nibbles = 0;
    for (std::size_t index = 0; index < text.size(); index++) {
        if (is_dash_position(index)) {
            if (text[index] != '-') return invalid_argument_error("invalid_id", "misplaced '-'");
            continue;
        }
        const int value = hex_value(text[index]);
        if (value < 0) return invalid_argument_error("invalid_id", "id is not hexadecimal");
        std::uint64_t& word = words[nibbles / 16];
        word = (word << 4) | static_cast<std::uint64_t>(value);
        nibbles++;
    }
    CHOREO_ASSERT(nibbles == 32);
    const MessageId id{words[0], words[1]};
    if (id.is_nil()) return invalid_argument_error("invalid_id", "the nil id is not a message id");
    return id;
}

std::array<std::uint8_t, 16> MessageId::to_bytes() const {
    std::array<std::uint8_t, 16> bytes{};
    for (std::size_t index = 0; index < 8; index++) {
        bytes[index] = static_cast<std::uint8_t>(high_ >> (56 - 8 * index));
        bytes[8 + index] = static_cast<std::uint8_t>(low_ >> (56 - 8 * index));
    }
    return bytes;
}

std::optional<MessageId> MessageId::from_bytes(ByteView bytes) {
    if (bytes.size() != 16) return std::nullopt;
    std::uint64_t high = 0;
    std::uint64_t low = 0;
    for (std::size_t index = 0; index < 8; index++) {
        high = (high << 8) | bytes[index];
        low = (low << 8) | bytes[8 + index];
    }
    return MessageId{high, low};
}

std::string MessageId::to_string() const {
    static constexpr char digits[] = "0123456789abcdef";
    std::string text(text_length, '-');
    std::size_t out = 0;
    for (int nibble = 0; nibble < 32; nibble++) {
        if (is_dash_position(out)) out++;
        const std::uint64_t word = nibble < 16 ? high_ : low_;
        const int shift = 60 - 4 * (nibble % 16);
        text[out++] = digits[(word >> shift) & 0xF];
    }
    CHOREO_ASSERT(out == text_length);
    return text;
}

// SHA-256 rather than a fast mixer: the parent id comes from outside senders, and with an
// invertible mixer a sender could pick parents whose derived ids collide with ours, so that a
// receiver's dedup would drop one of our messages as a copy of another.
MessageId derive_id(const MessageId& parent, std::uint64_t position) {
    CHOREO_ASSERT(!parent.is_nil());
    std::array<std::uint8_t, 24> fields;  // parent (16 bytes), then position (8), big-endian
    const std::span<std::uint8_t, 24> out{fields};
    put_big_endian(parent.high(), out.subspan<0, 8>());
    put_big_endian(parent.low(), out.subspan<8, 8>());
    put_big_endian(position, out.subspan<16, 8>());
    detail::Sha256 hash;
    hash.update(bytes_of_tag(derive_tag));
    hash.update(fields);
    const MessageId derived = id_of_digest(hash.finish());
    CHOREO_ASSERT(!derived.is_nil());
    CHOREO_ASSERT(derived.version() == 8);
    return derived;
}

// The bytes are whatever arrived and failed to decode, so they are chosen by outside senders too.
MessageId content_id(ByteView bytes) {
    detail::Sha256 hash;
    hash.update(bytes_of_tag(content_tag));
    hash.update(bytes);
    const MessageId id = id_of_digest(hash.finish());
    CHOREO_ASSERT(!id.is_nil());
    CHOREO_ASSERT(id.version() == 8);
    return id;
}

MessageId IdGenerator::next() {
    const TimeMs now_ms = clock_.now_ms();
    CHOREO_ASSERT(now_ms >= 0);
    if (now_ms > last_ms_) {
        last_ms_ = now_ms;
        last_counter_high_ = random_.next_u64() & counter_high_max;
        last_counter_low_ = random_.next_u64() & counter_low_max;
    } else if (last_counter_low_ < counter_low_max) {
        last_counter_low_++;  // same millisecond (or clock stepped back): stay increasing
    } else {
        CHOREO_ASSERT(last_counter_high_ < counter_high_max);
        last_counter_high_++;
        last_counter_low_ = 0;
    }
    const std::uint64_t high =
        (static_cast<std::uint64_t>(last_ms_) << 16) | (0x7ULL << 12) | last_counter_high_;
    const MessageId id{high, variant_rfc | last_counter_low_};
    CHOREO_ASSERT(id.version() == 7);
    return id;
}

}  // namespace choreo
