#!/usr/bin/env bash
# Runs kafka_ping_pong as two processes against choreo-dev-kafka (3 brokers; the service topics
# have 2 and 3 partitions): pong is started AFTER ping (the broker keeps ping's first ping), ping
# plays 5 rounds, pong is stopped. Then pong is started again on its own SQLite file: it resumes
# from the offsets it committed with its effects, so it applies nothing and sees no duplicates.
set -euo pipefail
example=$1
dev_kafka=$2
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT

"$dev_kafka" --brokers-count 3 --service ping:2 --service pong:3 --topic choreo.ping.1 --topic choreo.pong.1 \
  > "$dir/kafka.log" 2>&1 &
kafka_pid=$!
for _ in $(seq 200); do
  grep -q '^bootstrap: ' "$dir/kafka.log" 2>/dev/null && break
  kill -0 $kafka_pid 2>/dev/null || { cat "$dir/kafka.log"; exit 1; }
  sleep 0.05
done
brokers=$(head -n 1 "$dir/kafka.log" | sed 's/^bootstrap: //')

timeout 60 "$example" --role ping --brokers "$brokers" --data "$dir/ping" --rounds 5 \
  > "$dir/ping.log" 2>&1 &
ping_pid=$!
sleep 0.3
"$example" --role pong --brokers "$brokers" --data "$dir/pong" > "$dir/pong.log" 2>&1 &
pong_pid=$!
wait $ping_pid || { cat "$dir/ping.log" "$dir/pong.log"; exit 1; }
kill -TERM $pong_pid
wait $pong_pid || true
cat "$dir/ping.log" "$dir/pong.log"
grep -q "ping: pong 5" "$dir/ping.log"
grep -q "kafka_ping_pong: pong applied 5," "$dir/pong.log"

# The restart: give it time to read anything it would read again.
"$example" --role pong --brokers "$brokers" --data "$dir/pong" > "$dir/pong-again.log" 2>&1 &
pong_pid=$!
sleep 2
kill -TERM $pong_pid
wait $pong_pid || true
cat "$dir/pong-again.log"
grep -q "kafka_ping_pong: pong applied 0, duplicates 0," "$dir/pong-again.log"

kill -TERM $kafka_pid
wait $kafka_pid
echo "example_kafka_ping_pong: ok"
