// choreo/detail/msgpack_wire.h — a bounded msgpack writer and a pull reader over untrusted bytes.
//
// The envelope codec and the transports' frame codecs use these instead of building a tree of
// msgpack objects: the reader never allocates, never reads past its span and never recurses
// deeper than it is told. Every failure is a named reason (see choreo/codec.h).
#pragma once

#include <cstdint>
#include <string_view>

#include "choreo/bytes.h"
#include "choreo/status.h"

namespace choreo::detail {

class MsgpackWriter {
public:
    explicit MsgpackWriter(Bytes& out) : out_(out) {}
    void map_header(std::uint32_t count);
    void array_header(std::uint32_t count);
    void string(std::string_view text);
    void binary(ByteView bytes);
    void unsigned_integer(std::uint64_t value);
    void signed_integer(std::int64_t value);
    void nil();

private:
    void put_byte(std::uint8_t byte) { out_.push_back(byte); }
    void put_big_endian(std::uint64_t value, int bytes);
    Bytes& out_;
};

// Reads msgpack values one at a time. On failure the returned Status names the reason
// ("truncated", "wrong_type", "too_deep", "invalid_msgpack") and the reader must not be used on.
class MsgpackReader {
public:
    explicit MsgpackReader(ByteView bytes) : bytes_(bytes) {}

    Result<std::uint32_t> map_header();
    Result<std::uint32_t> array_header();
    Result<std::string_view> string();    // a view into the input: valid while it lives
    Result<ByteView> binary();             // likewise
    Result<std::int64_t> integer();        // any msgpack integer that fits in int64
    Result<bool> boolean();
    // Skips one value of any type, descending at most `depth_max` levels into maps and arrays.
    Status skip(std::size_t depth_max);

    bool at_end() const { return offset_ == bytes_.size(); }
    std::size_t offset() const { return offset_; }
    std::size_t remaining() const { return bytes_.size() - offset_; }

private:
    Result<std::uint8_t> peek_byte() const;
    Result<std::uint64_t> take_big_endian(int bytes);
    Result<ByteView> take(std::uint64_t count);
    Status skip_value(std::size_t depth_left);

    ByteView bytes_;
    std::size_t offset_ = 0;
};

}  // namespace choreo::detail
