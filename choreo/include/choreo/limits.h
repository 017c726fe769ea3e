// choreo/limits.h — the bounds on one message (design §4.8: bounded everything).
//
// Both sides of a choreography should agree on these; a message over a limit is refused with a
// named error, never truncated.
#pragma once

#include <cstddef>

namespace choreo {

struct MessageLimits {
    std::size_t message_bytes_max = 1024 * 1024;   // one encoded envelope
    std::size_t kind_bytes_max = 128;
    std::size_t field_bytes_max = 256;             // corr, cause, promise
    std::size_t headers_count_max = 64;
    std::size_t header_bytes_max = 1024;           // one header key or value
    std::size_t nesting_depth_max = 16;            // of values under unknown keys
    std::size_t keys_count_max = 64;               // keys in the envelope map, unknown included
};

}  // namespace choreo
