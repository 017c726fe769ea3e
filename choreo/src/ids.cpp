#include "choreo/ids.h"

#include <array>

namespace choreo {
namespace {

constexpr std::uint64_t version_mask = 0xFULL << 12;
constexpr std::uint64_t variant_mask = 0x3ULL << 62;
constexpr std::uint64_t variant_rfc = 0x2ULL << 62;
constexpr std::uint64_t counter_low_max = (1ULL << 62) - 1;
constexpr std::uint64_t counter_high_max = (1ULL << 12) - 1;

std::uint64_t mix64(std::uint64_t value) {
    value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9ULL;
    value = (value ^ (value >> 27)) * 0x94D049BB133111EBULL;
    return value ^ (value >> 31);
}

std::uint64_t rotate_left(std::uint64_t value, int bits) {
    return (value << bits) | (value >> (64 - bits));
}

MessageId with_version(std::uint64_t high, std::uint64_t low, std::uint64_t version) {
    high = (high & ~version_mask) | (version << 12);
    low = (low & ~variant_mask) | variant_rfc;
    return MessageId{high, low};
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

MessageId derive_id(const MessageId& parent, std::uint64_t position) {
    CHOREO_ASSERT(!parent.is_nil());
    const std::uint64_t first = mix64(parent.high() ^ mix64(position + 0x632BE59BD9B4E019ULL));
    const std::uint64_t second = mix64(parent.low() ^ rotate_left(first, 23) ^ position);
    const MessageId derived = with_version(mix64(first ^ rotate_left(second, 41)), second, 8);
    CHOREO_ASSERT(!derived.is_nil());
    return derived;
}

MessageId content_id(ByteView bytes) {
    // Two independent FNV-1a style lanes, finalized with mix64.
    std::uint64_t first = 0xCBF29CE484222325ULL;
    std::uint64_t second = 0x84222325CBF29CE4ULL ^ bytes.size();
    for (std::uint8_t byte : bytes) {
        first = (first ^ byte) * 0x100000001B3ULL;
        second = (second ^ byte) * 0x00000100000001B3ULL + 0x9E3779B97F4A7C15ULL;
    }
    return with_version(mix64(first), mix64(second ^ rotate_left(first, 17)), 8);
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
