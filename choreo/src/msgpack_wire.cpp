#include "choreo/detail/msgpack_wire.h"

#include <limits>

namespace choreo::detail {
namespace {

Status truncated() { return invalid_argument_error("truncated", "input ends inside a value"); }
Status wrong_type(const char* expected) {
    return invalid_argument_error("wrong_type", std::string("expected ") + expected);
}

}  // namespace

void MsgpackWriter::put_big_endian(std::uint64_t value, int bytes) {
    CHOREO_ASSERT(bytes == 1 || bytes == 2 || bytes == 4 || bytes == 8);
    for (int index = bytes - 1; index >= 0; index--) {
        put_byte(static_cast<std::uint8_t>(value >> (8 * index)));
    }
}

void MsgpackWriter::map_header(std::uint32_t count) {
    if (count < 16) {
        put_byte(static_cast<std::uint8_t>(0x80 | count));
    } else if (count <= 0xFFFF) {
        put_byte(0xde);
        put_big_endian(count, 2);
    } else {
        put_byte(0xdf);
        put_big_endian(count, 4);
    }
}

void MsgpackWriter::array_header(std::uint32_t count) {
    if (count < 16) {
        put_byte(static_cast<std::uint8_t>(0x90 | count));
    } else if (count <= 0xFFFF) {
        put_byte(0xdc);
        put_big_endian(count, 2);
    } else {
        put_byte(0xdd);
        put_big_endian(count, 4);
    }
}

void MsgpackWriter::string(std::string_view text) {
    CHOREO_ASSERT(text.size() <= std::numeric_limits<std::uint32_t>::max());
    const std::size_t size = text.size();
    if (size < 32) {
        put_byte(static_cast<std::uint8_t>(0xa0 | size));
    } else if (size <= 0xFF) {
        put_byte(0xd9);
        put_big_endian(size, 1);
    } else if (size <= 0xFFFF) {
        put_byte(0xda);
        put_big_endian(size, 2);
    } else {
        put_byte(0xdb);
        put_big_endian(size, 4);
    }
    out_.insert(out_.end(), text.begin(), text.end());
}

void MsgpackWriter::binary(ByteView bytes) {
    CHOREO_ASSERT(bytes.size() <= std::numeric_limits<std::uint32_t>::max());
    const std::size_t size = bytes.size();
    if (size <= 0xFF) {
        put_byte(0xc4);
        put_big_endian(size, 1);
    } else if (size <= 0xFFFF) {
        put_byte(0xc5);
        put_big_endian(size, 2);
    } else {
        put_byte(0xc6);
        put_big_endian(size, 4);
    }
    out_.insert(out_.end(), bytes.begin(), bytes.end());
}

void MsgpackWriter::unsigned_integer(std::uint64_t value) {
    if (value < 128) {
        put_byte(static_cast<std::uint8_t>(value));
    } else if (value <= 0xFF) {
        put_byte(0xcc);
        put_big_endian(value, 1);
    } else if (value <= 0xFFFF) {
        put_byte(0xcd);
        put_big_endian(value, 2);
    } else if (value <= 0xFFFFFFFFULL) {
        put_byte(0xce);
        put_big_endian(value, 4);
    } else {
        put_byte(0xcf);
        put_big_endian(value, 8);
    }
}

void MsgpackWriter::signed_integer(std::int64_t value) {
    if (value >= 0) {
        unsigned_integer(static_cast<std::uint64_t>(value));
    } else if (value >= -32) {
        put_byte(static_cast<std::uint8_t>(value));
    } else {
        put_byte(0xd3);
        put_big_endian(static_cast<std::uint64_t>(value), 8);
    }
}

void MsgpackWriter::nil() { put_byte(0xc0); }

Result<std::uint8_t> MsgpackReader::peek_byte() const {
    if (offset_ >= bytes_.size()) return truncated();
    return bytes_[offset_];
}

Result<ByteView> MsgpackReader::take(std::uint64_t count) {
    if (count > remaining()) return truncated();
    const ByteView taken = bytes_.subspan(offset_, static_cast<std::size_t>(count));
    offset_ += static_cast<std::size_t>(count);
    return taken;
}

Result<std::uint64_t> MsgpackReader::take_big_endian(int bytes) {
    Result<ByteView> taken = take(static_cast<std::uint64_t>(bytes));
    if (!taken.ok()) return taken.status();
    std::uint64_t value = 0;
    for (std::uint8_t byte : *taken) value = (value << 8) | byte;
    return value;
}

Result<std::uint32_t> MsgpackReader::map_header() {
    Result<std::uint8_t> head = peek_byte();
    if (!head.ok()) return head.status();
    const std::uint8_t byte = *head;
    if ((byte & 0xF0) == 0x80) {
        offset_++;
        return static_cast<std::uint32_t>(byte & 0x0F);
    }
    if (byte != 0xde && byte != 0xdf) return wrong_type("a map");
    offset_++;
    Result<std::uint64_t> count = take_big_endian(byte == 0xde ? 2 : 4);
    if (!count.ok()) return count.status();
    return static_cast<std::uint32_t>(*count);
}

Result<std::uint32_t> MsgpackReader::array_header() {
    Result<std::uint8_t> head = peek_byte();
    if (!head.ok()) return head.status();
    const std::uint8_t byte = *head;
    if ((byte & 0xF0) == 0x90) {
        offset_++;
        return static_cast<std::uint32_t>(byte & 0x0F);
    }
    if (byte != 0xdc && byte != 0xdd) return wrong_type("an array");
    offset_++;
    Result<std::uint64_t> count = take_big_endian(byte == 0xdc ? 2 : 4);
    if (!count.ok()) return count.status();
    return static_cast<std::uint32_t>(*count);
}

Result<std::string_view> MsgpackReader::string() {
    Result<std::uint8_t> head = peek_byte();
    if (!head.ok()) return head.status();
    const std::uint8_t byte = *head;
    std::uint64_t size = 0;
    if ((byte & 0xE0) == 0xa0) {
        offset_++;
        size = byte & 0x1F;
    } else if (byte == 0xd9 || byte == 0xda || byte == 0xdb) {
        offset_++;
        Result<std::uint64_t> length = take_big_endian(byte == 0xd9 ? 1 : byte == 0xda ? 2 : 4);
        if (!length.ok()) return length.status();
        size = *length;
    } else {
        return wrong_type("a string");
    }
    Result<ByteView> data = take(size);
    if (!data.ok()) return data.status();
    return text_of(*data);
}

Result<ByteView> MsgpackReader::binary() {
    Result<std::uint8_t> head = peek_byte();
    if (!head.ok()) return head.status();
    const std::uint8_t byte = *head;
    if (byte != 0xc4 && byte != 0xc5 && byte != 0xc6) return wrong_type("binary");
    offset_++;
    Result<std::uint64_t> length = take_big_endian(byte == 0xc4 ? 1 : byte == 0xc5 ? 2 : 4);
    if (!length.ok()) return length.status();
    return take(*length);
}

Result<std::int64_t> MsgpackReader::integer() {
    Result<std::uint8_t> head = peek_byte();
    if (!head.ok()) return head.status();
    const std::uint8_t byte = *head;
    if (byte < 0x80) {
        offset_++;
        return static_cast<std::int64_t>(byte);
    }
    if (byte >= 0xe0) {
        offset_++;
        return static_cast<std::int64_t>(static_cast<std::int8_t>(byte));
    }
    if (byte >= 0xcc && byte <= 0xcf) {  // uint8..uint64
        offset_++;
        Result<std::uint64_t> value = take_big_endian(1 << (byte - 0xcc));
        if (!value.ok()) return value.status();
        if (*value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            return wrong_type("an integer that fits in int64");
        }
        return static_cast<std::int64_t>(*value);
    }
    if (byte >= 0xd0 && byte <= 0xd3) {  // int8..int64, sign-extended
        offset_++;
        const int width = 1 << (byte - 0xd0);
        Result<std::uint64_t> value = take_big_endian(width);
        if (!value.ok()) return value.status();
        if (width == 8) return static_cast<std::int64_t>(*value);
        const std::uint64_t sign_bit = 1ULL << (8 * width - 1);
        return static_cast<std::int64_t>((*value ^ sign_bit)) - static_cast<std::int64_t>(sign_bit);
    }
    return wrong_type("an integer");
}

Result<bool> MsgpackReader::boolean() {
    Result<std::uint8_t> head = peek_byte();
    if (!head.ok()) return head.status();
    if (*head != 0xc2 && *head != 0xc3) return wrong_type("a boolean");
    offset_++;
    return *head == 0xc3;
}

Status MsgpackReader::skip(std::size_t depth_max) { return skip_value(depth_max); }

Status MsgpackReader::skip_value(std::size_t depth_left) {
    Result<std::uint8_t> head = peek_byte();
    if (!head.ok()) return head.status();
    const std::uint8_t byte = *head;
    const bool is_map = (byte & 0xF0) == 0x80 || byte == 0xde || byte == 0xdf;
    const bool is_array = (byte & 0xF0) == 0x90 || byte == 0xdc || byte == 0xdd;
    if (is_map || is_array) {
        if (depth_left == 0) return invalid_argument_error("too_deep", "nesting over the limit");
        Result<std::uint32_t> count = is_map ? map_header() : array_header();
        if (!count.ok()) return count.status();
        const std::uint64_t items = is_map ? 2ULL * *count : *count;
        // Every item takes at least one byte, so a lying count runs out of input quickly.
        if (items > remaining()) return truncated();
        for (std::uint64_t item = 0; item < items; item++) {
            CHOREO_RETURN_IF_ERROR(skip_value(depth_left - 1));
        }
        return Status{};
    }
    if (byte < 0x80 || byte >= 0xe0 || byte == 0xc0 || byte == 0xc2 || byte == 0xc3) {
        offset_++;
        return Status{};
    }
    if ((byte & 0xE0) == 0xa0 || (byte >= 0xd9 && byte <= 0xdb)) return string().status();
    if (byte >= 0xc4 && byte <= 0xc6) return binary().status();
    if (byte >= 0xcc && byte <= 0xd3) {  // uint8..int64: skipped by width, so a uint64 above
        offset_++;                        // int64's range is skipped too, not refused
        return take(1ULL << ((byte - 0xcc) % 4)).status();
    }
    offset_++;
    switch (byte) {
        case 0xca: return take(4).status();  // float32
        case 0xcb: return take(8).status();  // float64
        case 0xd4: return take(2).status();  // fixext 1: type + data
        case 0xd5: return take(3).status();
        case 0xd6: return take(5).status();
        case 0xd7: return take(9).status();
        case 0xd8: return take(17).status();
        case 0xc7:
        case 0xc8:
        case 0xc9: {
            Result<std::uint64_t> length = take_big_endian(byte == 0xc7 ? 1 : byte == 0xc8 ? 2 : 4);
            if (!length.ok()) return length.status();
            return take(*length + 1).status();  // type byte + data
        }
        default: break;
    }
    CHOREO_ASSERT(byte == 0xc1);
    return invalid_argument_error("invalid_msgpack", "byte 0xc1 is never used by msgpack");
}

}  // namespace choreo::detail
