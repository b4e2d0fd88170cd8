#!/usr/bin/env bash
# Benchmarks of `hodometer receive` on loopback, with the load generator in
# examples/receive_load.rs (it runs on the same cores).
#
#   scripts/bench-receive.sh [EVENTS] [CONNECTIONS] [BATCH]   events/s and p50/p99 latency into
#                                                             --record all --store (defaults 20000 16 1)
#   scripts/bench-receive.sh stalled [CONNECTIONS] [SECONDS]  receiver RSS while CONNECTIONS
#                                                             slowloris connections are held (2000 5)
#   scripts/bench-receive.sh metrics [CLUSTERS]               /metrics size and time with CLUSTERS
#                                                             clusters tracked (10000, the default cap)
#
# PROFILE=debug uses the debug build (release builds take long: fat LTO); default release.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build --release --locked --quiet --bin hodometer --example receive_load
else
  cargo build --locked --quiet --bin hodometer --example receive_load
fi
target=${CARGO_TARGET_DIR:-target}/$profile
bin=$target/hodometer
load=$target/examples/receive_load

dir=$(mktemp -d)
receiver=
trap '[ -n "$receiver" ] && kill "$receiver" 2>/dev/null; rm -rf "$dir"' EXIT

# Starts the receiver with the given arguments and sets $port.
start() {
  "$bin" receive --listen 127.0.0.1:0 "$@" >"$dir/out" 2>/dev/null &
  receiver=$!
  until grep -q listening "$dir/out"; do sleep 0.01; done
  port=$(grep -o '[0-9]*$' "$dir/out")
}

rss() { awk '/^VmRSS/ {print $2 " kB"}' "/proc/$receiver/status"; }

case "${1:-}" in
stalled)
  connections=${2:-2000}
  seconds=${3:-5}
  # The load generator needs a descriptor per connection.
  ulimit -n "$((connections + 100))" 2>/dev/null || true
  start --record summary
  echo "receiver RSS idle: $(rss)"
  "$load" stall "$port" "$connections" "$seconds" &
  staller=$!
  sleep "$((seconds - 1))"
  echo "receiver RSS with the stalled connections: $(rss)"
  wait "$staller"
  ;;
metrics)
  clusters=${2:-10000}
  start --record summary --store "$dir/events.db"
  "$load" "$port" "$clusters" 16 50 "$clusters" >/dev/null
  curl -s -o "$dir/metrics" -w 'GET /metrics: %{size_download} bytes in %{time_total} s\n' \
    "http://127.0.0.1:$port/metrics"
  grep -c '^hodometer_receiver_cluster_last_event_timestamp_seconds{' "$dir/metrics" |
    sed 's/^/clusters exported: /'
  echo "receiver RSS: $(rss)"
  ;;
*)
  events=${1:-20000}
  connections=${2:-16}
  batch=${3:-1}
  start --record all --store "$dir/events.db"
  "$load" "$port" "$events" "$connections" "$batch"
  kill -TERM "$receiver"
  wait "$receiver"
  receiver=
  printf 'store: %s events, %s bytes\n' \
    "$(sqlite3 "$dir/events.db" 'SELECT count(*) FROM events' 2>/dev/null || echo '?')" \
    "$(du -b "$dir/events.db" | cut -f1)"
  ;;
esac
