#!/usr/bin/env bash
# Benchmark: events per second `hodometer receive` accepts with --store, on loopback.
# Starts the release receiver with a fresh SQLite store (--record all, the most work per event),
# then runs the load generator in examples/receive_load.rs against it.
#
#   scripts/bench-receive.sh [EVENTS] [CONNECTIONS] [BATCH]   (defaults 20000 16 1)
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-20000}
connections=${2:-16}
batch=${3:-1}

cargo build --release --locked --quiet --bin hodometer --example receive_load
bin=target/release/hodometer

dir=$(mktemp -d)
"$bin" receive --listen 127.0.0.1:0 --record all --store "$dir/events.db" >"$dir/out" 2>/dev/null &
receiver=$!
trap 'kill $receiver 2>/dev/null; rm -rf "$dir"' EXIT
until grep -q listening "$dir/out"; do sleep 0.01; done
port=$(grep -o '[0-9]*$' "$dir/out")

target/release/examples/receive_load "$port" "$events" "$connections" "$batch"
kill -TERM "$receiver"
wait "$receiver"
printf 'store: %s events, %s bytes\n' \
  "$(sqlite3 "$dir/events.db" 'SELECT count(*) FROM events' 2>/dev/null || echo '?')" \
  "$(du -b "$dir/events.db" | cut -f1)"
