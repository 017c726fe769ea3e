// SHA-256 as specified in FIPS 180-4; section numbers below refer to that document.
#include "choreo/detail/sha256.h"

#include <algorithm>
#include <bit>

#include "choreo/assert.h"

namespace choreo::detail {
namespace {

constexpr int rounds = 64;
constexpr std::size_t length_field_bytes = 8;  // the message length in bits, ending the last block

// §4.2.2: the first 32 bits of the fractional parts of the cube roots of the first 64 primes.
constexpr std::array<std::uint32_t, rounds> round_constants = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

// §5.3.3: the first 32 bits of the fractional parts of the square roots of the first 8 primes.
constexpr std::array<std::uint32_t, 8> initial_state = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

// §4.1.2: the six logical functions.
std::uint32_t choose(std::uint32_t x, std::uint32_t y, std::uint32_t z) {
    return (x & y) ^ (~x & z);
}
std::uint32_t majority(std::uint32_t x, std::uint32_t y, std::uint32_t z) {
    return (x & y) ^ (x & z) ^ (y & z);
}
std::uint32_t big_sigma0(std::uint32_t x) {
    return std::rotr(x, 2) ^ std::rotr(x, 13) ^ std::rotr(x, 22);
}
std::uint32_t big_sigma1(std::uint32_t x) {
    return std::rotr(x, 6) ^ std::rotr(x, 11) ^ std::rotr(x, 25);
}
std::uint32_t small_sigma0(std::uint32_t x) {
    return std::rotr(x, 7) ^ std::rotr(x, 18) ^ (x >> 3);
}
std::uint32_t small_sigma1(std::uint32_t x) {
    return std::rotr(x, 17) ^ std::rotr(x, 19) ^ (x >> 10);
}

std::uint32_t load_big_endian32(const std::uint8_t* bytes) {
    return (static_cast<std::uint32_t>(bytes[0]) << 24) |
           (static_cast<std::uint32_t>(bytes[1]) << 16) |
           (static_cast<std::uint32_t>(bytes[2]) << 8) | static_cast<std::uint32_t>(bytes[3]);
}

void store_big_endian(std::uint64_t value, std::span<std::uint8_t> out) {
    CHOREO_ASSERT(out.size() <= 8);
    for (std::size_t index = 0; index < out.size(); index++) {
        out[index] = static_cast<std::uint8_t>(value >> (8 * (out.size() - 1 - index)));
    }
}

}  // namespace

Sha256::Sha256() : state_(initial_state) {}

// §6.2.2: one block of the hash computation.
void Sha256::compress(Block block) {
    std::array<std::uint32_t, rounds> schedule;
    for (int t = 0; t < 16; t++) schedule[t] = load_big_endian32(block.data() + 4 * t);
    for (int t = 16; t < rounds; t++) {
        schedule[t] = small_sigma1(schedule[t - 2]) + schedule[t - 7] +
                      small_sigma0(schedule[t - 15]) + schedule[t - 16];
    }
    std::uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3];
    std::uint32_t e = state_[4], f = state_[5], g = state_[6], h = state_[7];
    for (int t = 0; t < rounds; t++) {
        const std::uint32_t t1 =
            h + big_sigma1(e) + choose(e, f, g) + round_constants[t] + schedule[t];
        const std::uint32_t t2 = big_sigma0(a) + majority(a, b, c);
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state_[0] += a;
    state_[1] += b;
    state_[2] += c;
    state_[3] += d;
    state_[4] += e;
    state_[5] += f;
    state_[6] += g;
    state_[7] += h;
}

void Sha256::update(ByteView bytes) {
    CHOREO_ASSERT(!finished_);
    CHOREO_ASSERT(buffer_size_ < block_bytes);
    CHOREO_ASSERT(bytes.size() <= message_bytes_max - message_bytes_);
    message_bytes_ += bytes.size();
    if (buffer_size_ > 0) {  // top up the partial block first
        const std::size_t taken = std::min(block_bytes - buffer_size_, bytes.size());
        std::copy_n(bytes.begin(), taken, buffer_.begin() + buffer_size_);
        buffer_size_ += taken;
        bytes = bytes.subspan(taken);
        if (buffer_size_ < block_bytes) return;
        compress(buffer_);
        buffer_size_ = 0;
    }
    for (; bytes.size() >= block_bytes; bytes = bytes.subspan(block_bytes)) {
        compress(bytes.first<block_bytes>());
    }
    std::copy(bytes.begin(), bytes.end(), buffer_.begin());
    buffer_size_ = bytes.size();
    CHOREO_ASSERT(buffer_size_ < block_bytes);
}

Sha256::Digest Sha256::finish() {
    CHOREO_ASSERT(!finished_);
    CHOREO_ASSERT(buffer_size_ < block_bytes);
    finished_ = true;
    // §5.1.1: a 1 bit, then zeros until 8 bytes short of a block end, then the length in bits.
    // When fewer than 9 bytes are left in the partial block, the padding spills into one more.
    buffer_[buffer_size_++] = 0x80;
    if (buffer_size_ > block_bytes - length_field_bytes) {
        std::fill(buffer_.begin() + static_cast<std::ptrdiff_t>(buffer_size_), buffer_.end(), 0);
        compress(buffer_);
        buffer_size_ = 0;
    }
    const auto length_field = buffer_.end() - length_field_bytes;
    std::fill(buffer_.begin() + static_cast<std::ptrdiff_t>(buffer_size_), length_field, 0);
    store_big_endian(message_bytes_ * 8, std::span(length_field, buffer_.end()));
    compress(buffer_);

    Digest digest;
    for (std::size_t word = 0; word < state_.size(); word++) {
        store_big_endian(state_[word], std::span(digest).subspan(4 * word, 4));
    }
    return digest;
}

Sha256::Digest sha256(ByteView bytes) {
    Sha256 hash;
    hash.update(bytes);
    return hash.finish();
}

}  // namespace choreo::detail
