// choreo/random.h — randomness as an injected dependency.
//
// The kernel draws randomness (new ids, retry jitter) only from a Random it is handed, so one
// seed reproduces a whole run. SeededRandom is deterministic; SystemRandom (choreo/system.h)
// seeds one from the operating system.
//
//   SeededRandom random{42};
//   std::uint64_t jitter_ms = random.below(100);
#pragma once

#include <cstdint>

#include "choreo/assert.h"

namespace choreo {

class Random {
public:
    virtual ~Random() = default;
    virtual std::uint64_t next_u64() = 0;

    // Uniform in [0, bound). Integer-only, so decisions never depend on floating point.
    std::uint64_t below(std::uint64_t bound) {
        CHOREO_ASSERT(bound > 0);
        // Rejection sampling removes modulo bias.
        const std::uint64_t limit = UINT64_MAX - (UINT64_MAX % bound);
        for (int attempt = 0; attempt < 64; attempt++) {
            const std::uint64_t draw = next_u64();
            if (draw < limit) return draw % bound;
        }
        return next_u64() % bound;  // vanishingly rare; bias is acceptable here
    }
    // True with probability numerator/denominator.
    bool chance(std::uint64_t numerator, std::uint64_t denominator) {
        CHOREO_ASSERT(denominator > 0);
        CHOREO_ASSERT(numerator <= denominator);
        return below(denominator) < numerator;
    }
};

// SplitMix64: small, fast, and good enough for ids and jitter (not for secrets).
class SeededRandom final : public Random {
public:
    explicit SeededRandom(std::uint64_t seed) : state_(seed) {}
    std::uint64_t next_u64() override {
        state_ += 0x9E3779B97F4A7C15ULL;
        std::uint64_t mixed = state_;
        mixed = (mixed ^ (mixed >> 30)) * 0xBF58476D1CE4E5B9ULL;
        mixed = (mixed ^ (mixed >> 27)) * 0x94D049BB133111EBULL;
        return mixed ^ (mixed >> 31);
    }

private:
    std::uint64_t state_;
};

}  // namespace choreo
