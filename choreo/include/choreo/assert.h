// choreo/assert.h — assertions that stay on in every build.
//
// An assertion catches a programmer error: when it fails the process prints the file, line and
// expression and aborts, in release builds too. Expected operating errors (bad input, peer gone,
// disk full) are never asserted; they are returned as a choreo::Status.
//
//   CHOREO_ASSERT(batch.size() <= batch_size_max);
//   if (row.confirmed) CHOREO_ASSERT(row.confirmed_at_ms > 0);   // an implication
#pragma once

namespace choreo::detail {
[[noreturn]] void assert_failed(const char* expression, const char* file, int line) noexcept;
}  // namespace choreo::detail

#define CHOREO_ASSERT(expression)                                             \
    do {                                                                      \
        if (!(expression)) [[unlikely]] {                                     \
            ::choreo::detail::assert_failed(#expression, __FILE__, __LINE__); \
        }                                                                     \
    } while (false)

// Marks a branch the program must never reach.
#define CHOREO_UNREACHABLE() ::choreo::detail::assert_failed("unreachable", __FILE__, __LINE__)
