#!/usr/bin/env bash
# The kernel stays pure (design §3): the headers reachable from choreo/kernel.h (and the base
# headers it stands on) bring in no I/O, threads, wall clock or global randomness, and the
# kernel's sources call none of them.
# usage: check_kernel_purity.sh CXX INCLUDE_DIR SOURCE_DIR
set -euo pipefail
cxx=$1 include_dir=$(realpath "$2") source_dir=$3
forbidden='/(iostream|fstream|ostream|istream|sstream|cstdio|stdio\.h|thread|mutex|condition_variable|future|chrono|ctime|time\.h|random|filesystem|unistd\.h|fcntl\.h|msgpack\.hpp|sqlite3\.h|zmq\.h|zmq\.hpp|rdkafka\.h|libpq-fe\.h)$'
deps_of() {  # the real paths of every header a translation unit (on stdin) includes
  "$cxx" -std=c++20 -I"$include_dir" -x c++ -M - | tr ' \\' '\n\n' | grep -E '^/' | xargs -r realpath | sort -u
}
failed=0
for header in kernel.h codec.h store.h transport.h envelope.h ids.h clock.h random.h status.h promise.h \
              durable.h execution.h task.h detail/sha256.h; do
  deps=$(echo "#include \"choreo/$header\"" | deps_of)
  project_headers=$(echo "$deps" | grep "^$include_dir/" || true)
  # The standard headers the project's headers name directly are checked by name...
  named=$(cat $project_headers | grep -ho '^#include <[^>]*>' | sed 's/#include <\(.*\)>/\/\1/' | sort -u)
  # ...and everything they pull in themselves (libstdc++'s <string> includes <cstdio> for
  # std::to_string) is the baseline; only what the project adds beyond it counts.
  baseline=$(echo "$named" | sed 's/^\/\(.*\)/#include <\1>/' | deps_of)
  added=$(comm -23 <(echo "$deps") <(echo "$baseline") | grep -v "^$include_dir/" || true)
  bad=$( (echo "$named"; echo "$added") | grep -E "$forbidden" || true)
  if [ -n "$bad" ]; then
    echo "choreo/$header reaches forbidden headers:"; echo "$bad"; failed=1
  fi
done
for source in kernel.cpp kernel_durable.cpp durable.cpp execution.cpp codec.cpp ids.cpp sha256.cpp \
              msgpack_wire.cpp address.cpp status.cpp promise.cpp; do
  if grep -nE 'system_clock|steady_clock|high_resolution_clock|random_device|[^_a-z]rand\(|[^_a-z]time\(|getenv|fopen|std::cout|std::cerr|printf' "$source_dir/$source"; then
    echo "choreo/src/$source uses the wall clock, global randomness or I/O"; failed=1
  fi
  if grep -nE '#include <(iostream|fstream|cstdio|thread|mutex|chrono|random|ctime|filesystem)>' "$source_dir/$source"; then
    echo "choreo/src/$source includes an I/O, thread, clock or randomness header"; failed=1
  fi
done
[ $failed -eq 0 ] && echo "kernel purity: ok"
exit $failed
