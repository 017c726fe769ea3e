#!/usr/bin/env bash
# choreo-dev-kafka end to end: bad arguments exit 2; a cluster of 2 brokers with a plain topic and
# a service topic comes up; kcat (a Kafka client we did not write) lists both topics with their
# partition counts and moves one record through; SIGTERM stops it with exit 0 and removes the
# bootstrap file.
set -euo pipefail
tool=$1
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT

expect_exit() {  # $1: expected status, then the arguments
  local expected=$1 status=0
  shift
  "$tool" "$@" > /dev/null 2> "$dir/usage.err" || status=$?
  if [ "$status" != "$expected" ]; then
    echo "choreo-dev-kafka $*: exit $status, expected $expected"; cat "$dir/usage.err"; return 1
  fi
}
expect_exit 0 --help
expect_exit 2 --no-such-flag
expect_exit 2 --brokers-count 0
expect_exit 2 --brokers-count 17
expect_exit 2 --topic 'bad/name'
expect_exit 2 --topic orders:0
expect_exit 2 --topic orders:x
expect_exit 2 --service 'a/b'
expect_exit 2 --topic choreo.orders --service orders
expect_exit 2 --topic
grep -q "needs a value" "$dir/usage.err"

"$tool" --brokers-count 2 --topic dev.plain:3 --service orders:2 --prefix test \
  --bootstrap-file "$dir/bootstrap" > "$dir/out" 2> "$dir/err" &
pid=$!
for _ in $(seq 200); do
  grep -q '^bootstrap: ' "$dir/out" 2>/dev/null && break
  kill -0 $pid 2>/dev/null || { echo "choreo-dev-kafka ended early"; cat "$dir/err"; exit 1; }
  sleep 0.05
done
line=$(head -n 1 "$dir/out")
case $line in "bootstrap: 127.0.0.1:"*) ;; *) echo "first line: '$line'"; exit 1 ;; esac
address=${line#bootstrap: }
[ "$(cat "$dir/bootstrap")" = "$address" ] || { echo "bootstrap file: '$(cat "$dir/bootstrap")'"; exit 1; }

timeout 20 kcat -b "$address" -L > "$dir/metadata"
cat "$dir/metadata"
grep -q ' 2 brokers:' "$dir/metadata"
grep -q 'topic "dev.plain" with 3 partitions' "$dir/metadata"
grep -q 'topic "test.orders" with 2 partitions' "$dir/metadata"

echo "hello from kcat" | timeout 20 kcat -b "$address" -P -t dev.plain -p 1
timeout 20 kcat -b "$address" -C -t dev.plain -p 1 -o beginning -c 1 -e > "$dir/consumed"
[ "$(cat "$dir/consumed")" = "hello from kcat" ] || { echo "consumed: '$(cat "$dir/consumed")'"; exit 1; }

kill -TERM $pid
status=0
wait $pid || status=$?
[ "$status" = 0 ] || { echo "exit $status after SIGTERM"; cat "$dir/err"; exit 1; }
[ ! -e "$dir/bootstrap" ] || { echo "bootstrap file left behind"; exit 1; }
echo "tool_dev_kafka: ok"
