#!/usr/bin/env bash
# `find_package(choreo COMPONENTS ...)` works after `cmake --install`: installs this build into
# a temporary prefix and builds and runs examples/installed_consumer against it.
# usage: install_consumer.sh BUILD_DIR SOURCE_DIR CXX [SANITIZE:ON|OFF]
set -euo pipefail
build_dir=$1 source_dir=$2 cxx=$3 sanitize=${4:-OFF}
flags=()
if [ "$sanitize" = ON ]; then  # a sanitized choreo needs a sanitized program around it
  flags=(-DCMAKE_CXX_FLAGS="-fsanitize=address,undefined" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined")
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir/examples/installed_consumer" -B "$work/consumer" -DCMAKE_CXX_COMPILER="$cxx" \
      -DCMAKE_PREFIX_PATH="$work/prefix" "${flags[@]}" >/dev/null
cmake --build "$work/consumer" -j 2 >/dev/null
"$work/consumer/consumer"
