#include "choreo/system.h"

#include <algorithm>
#include <chrono>
#include <random>

namespace choreo {

TimeMs SystemClock::now_ms() const {
    const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
    const TimeMs wall_ms = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count();
    TimeMs last_ms = last_ms_.load(std::memory_order_relaxed);
    while (wall_ms > last_ms && !last_ms_.compare_exchange_weak(last_ms, wall_ms, std::memory_order_relaxed)) {
    }
    return std::max(last_ms, wall_ms);
}

namespace {
std::uint64_t seed_from_os() {
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32) ^ device();
}
}  // namespace

SystemRandom::SystemRandom() : generator_(seed_from_os()) {}

}  // namespace choreo
