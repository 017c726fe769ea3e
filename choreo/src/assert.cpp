#include "choreo/assert.h"

#include <cstdio>
#include <cstdlib>

namespace choreo::detail {

void assert_failed(const char* expression, const char* file, int line) noexcept {
    std::fprintf(stderr, "choreo: assertion failed: %s (%s:%d)\n", expression, file, line);
    std::fflush(stderr);
    std::abort();
}

}  // namespace choreo::detail
