// choreo/clock.h — time as an injected dependency.
//
// The kernel never reads the wall clock: it is handed a Clock. Adapters use SystemClock
// (choreo/system.h); tests and the simulator use ManualClock and move time themselves.
//
//   ManualClock clock{1'700'000'000'000};
//   clock.advance_ms(250);
#pragma once

#include <cstdint>

#include "choreo/assert.h"

namespace choreo {

// Milliseconds since the Unix epoch, the unit of `sent_at` and `deadline` on the wire.
using TimeMs = std::int64_t;

class Clock {
public:
    virtual ~Clock() = default;
    // Called from the runtime thread only. Never goes backwards for one Clock object.
    virtual TimeMs now_ms() const = 0;
};

// A clock that moves only when told to. Single-threaded.
class ManualClock final : public Clock {
public:
    explicit ManualClock(TimeMs start_ms) : now_ms_(start_ms) { CHOREO_ASSERT(start_ms >= 0); }
    TimeMs now_ms() const override { return now_ms_; }
    void advance_ms(TimeMs delta_ms) {
        CHOREO_ASSERT(delta_ms >= 0);
        now_ms_ += delta_ms;
    }
    void set_ms(TimeMs time_ms) {
        CHOREO_ASSERT(time_ms >= now_ms_);
        now_ms_ = time_ms;
    }

private:
    TimeMs now_ms_;
};

}  // namespace choreo
