// choreo/system.h — the real clock and randomness, for services outside simulation.
//
//   choreo::SystemClock clock;
//   choreo::SystemRandom random;   // seeded from the operating system
#pragma once

#include <atomic>

#include "choreo/clock.h"
#include "choreo/random.h"

namespace choreo {

// Wall-clock milliseconds since the epoch, made monotonic: it never goes backwards even when
// the system clock is stepped back (it waits in place instead). Any thread.
class SystemClock final : public Clock {
public:
    TimeMs now_ms() const override;

private:
    mutable std::atomic<TimeMs> last_ms_{0};
};

// One per runtime thread: it is not thread-safe.
class SystemRandom final : public Random {
public:
    SystemRandom();
    std::uint64_t next_u64() override { return generator_.next_u64(); }

private:
    SeededRandom generator_;
};

}  // namespace choreo
