// choreo/bytes.h — the byte buffer types used for message bodies and encoded envelopes.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace choreo {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

inline Bytes bytes_of(std::string_view text) { return Bytes(text.begin(), text.end()); }
inline std::string_view text_of(ByteView bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

}  // namespace choreo
