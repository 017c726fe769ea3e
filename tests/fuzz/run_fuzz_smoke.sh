#!/usr/bin/env bash
# usage: run_fuzz_smoke.sh FUZZER FUZZ_DIR — 20 seconds of libFuzzer from the checked-in seeds.
set -euo pipefail
fuzzer=$1 fuzz_dir=$2
scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
"$fuzzer" -max_total_time=20 -dict="$fuzz_dir/decode_envelope.dict" "$scratch" "$fuzz_dir/corpus" 2>&1 | tail -3
