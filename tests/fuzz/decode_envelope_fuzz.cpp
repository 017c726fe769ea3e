// libFuzzer target for the envelope decoder: the one place choreo reads bytes from strangers.
//
// Every input must be decoded or refused without a crash, an out-of-bounds read, undefined
// behaviour or a leak (address and undefined-behaviour sanitizers), and refused only as
// invalid_argument with a reason. Every accepted input must survive encode -> decode unchanged,
// and re-encoding must be canonical (the same bytes again).
//
//   build-fuzz/tests/fuzz/decode_envelope_fuzz -max_total_time=60 \
//       -dict=tests/fuzz/decode_envelope.dict /tmp/new-corpus tests/fuzz/corpus
#include <cstddef>
#include <cstdint>

#include "choreo/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const choreo::MessageLimits limits;
    const choreo::Result<choreo::Envelope> decoded = choreo::decode_envelope({data, size}, limits);
    if (!decoded.ok()) {
        CHOREO_ASSERT(decoded.status().code() == choreo::StatusCode::invalid_argument);
        CHOREO_ASSERT(!decoded.status().reason().empty());
        return 0;
    }
    const choreo::Result<choreo::Bytes> encoded = choreo::encode_envelope(*decoded, limits);
    if (!encoded.ok()) {
        // Re-encoding writes all twelve keys, so an input close to the size limit that left
        // optional keys out may grow past it. Nothing else may fail.
        CHOREO_ASSERT(encoded.status().reason() == choreo::decode_error::too_large);
        return 0;
    }
    const choreo::Result<choreo::Envelope> again = choreo::decode_envelope(*encoded, limits);
    CHOREO_ASSERT(again.ok());
    CHOREO_ASSERT(*again == *decoded);
    const choreo::Result<choreo::Bytes> encoded_again = choreo::encode_envelope(*again, limits);
    CHOREO_ASSERT(encoded_again.ok());
    CHOREO_ASSERT(*encoded_again == *encoded);
    return 0;
}
