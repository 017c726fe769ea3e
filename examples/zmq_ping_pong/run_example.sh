#!/usr/bin/env bash
# Runs zmq_ping_pong as two processes, first in plain text, then with CURVE: pong is started
# AFTER ping (ping's first ping waits in its outbox), ping plays 5 rounds, pong is stopped.
set -euo pipefail
example=$1
keygen=$2
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

play() {  # $1: directory file, then extra arguments for ping and for pong
  local directory=$1 ping_extra=$2 pong_extra=$3
  rm -rf "$dir/ping" "$dir/pong"
  # shellcheck disable=SC2086
  timeout 60 "$example" --role ping --directory "$directory" --data "$dir/ping" --rounds 5 $ping_extra \
    > "$dir/ping.log" 2>&1 &
  local ping_pid=$!
  sleep 0.3
  # shellcheck disable=SC2086
  "$example" --role pong --directory "$directory" --data "$dir/pong" $pong_extra > "$dir/pong.log" 2>&1 &
  local pong_pid=$!
  wait $ping_pid || { cat "$dir/ping.log" "$dir/pong.log"; return 1; }
  kill -TERM $pong_pid
  wait $pong_pid || true
  cat "$dir/ping.log" "$dir/pong.log"
  grep -q "ping: pong 5" "$dir/ping.log"
  grep -q "zmq_ping_pong: pong applied 5" "$dir/pong.log"
}

printf 'ping/1 tcp://127.0.0.1:%s\npong/1 tcp://127.0.0.1:%s\n' "$(port)" "$(port)" > "$dir/plain.conf"
play "$dir/plain.conf" "" ""

"$keygen" "$dir/ping" > /dev/null
"$keygen" "$dir/pong" > /dev/null
cp "$dir/ping.pub" "$dir/pong.allow"   # pong admits ping
cp "$dir/pong.pub" "$dir/ping.allow"   # ping admits pong (its replies)
printf 'ping/1 tcp://127.0.0.1:%s key-file=%s\npong/1 tcp://127.0.0.1:%s key-file=%s\n' \
  "$(port)" "$dir/ping.pub" "$(port)" "$dir/pong.pub" > "$dir/curve.conf"
play "$dir/curve.conf" "--keys $dir/ping --allow $dir/ping.allow" "--keys $dir/pong --allow $dir/pong.allow"
echo "example_zmq_ping_pong: plain and CURVE runs ok"
