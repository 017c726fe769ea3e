// choreo/detail/sha256.h — SHA-256 (FIPS 180-4), written for choreo's deterministic ids.
//
// derive_id and content_id hash their inputs with it so that an outside sender, who chooses the
// ids and bytes it sends us, cannot construct two inputs that give the same id (and so get one of
// our messages dropped by a receiver's dedup). Pure: no I/O, no allocation.
//
//   detail::Sha256 hash;
//   hash.update(bytes_of("ab"));
//   hash.update(bytes_of("c"));
//   detail::Sha256::Digest digest = hash.finish();   // == detail::sha256(bytes_of("abc"))
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "choreo/bytes.h"

namespace choreo::detail {

class Sha256 {
public:
    static constexpr std::size_t digest_bytes = 32;
    static constexpr std::size_t block_bytes = 64;
    // FIPS 180-4 hashes messages shorter than 2^64 bits; the length is counted in bytes here.
    static constexpr std::uint64_t message_bytes_max = (1ULL << 61) - 1;
    using Digest = std::array<std::uint8_t, digest_bytes>;
    using Block = std::span<const std::uint8_t, block_bytes>;

    Sha256();

    // Appends bytes to the message; may be called any number of times before finish().
    void update(ByteView bytes);
    // Pads the message and returns its digest. Call once: the hash is spent afterwards.
    Digest finish();

private:
    void compress(Block block);

    std::array<std::uint32_t, 8> state_;
    std::array<std::uint8_t, block_bytes> buffer_{};  // a partial block, waiting for more bytes
    std::size_t buffer_size_ = 0;
    std::uint64_t message_bytes_ = 0;
    bool finished_ = false;
};

// The digest of one whole message.
Sha256::Digest sha256(ByteView bytes);

}  // namespace choreo::detail
