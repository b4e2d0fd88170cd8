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
#   scripts/bench-receive.sh frames                           WAL frames one commit of 16 events writes,
#                                                             with and without a UNIQUE index on the
#                                                             events' insert_id (sqlite3 CLI, no receiver)
#   scripts/bench-receive.sh disk [WRITES]                    the disk's latency of one synced 4 KiB
#                                                             overwrite (dd oflag=dsync, default 2000),
#                                                             the floor under every durable commit
#
# PROFILE=debug uses the debug build, PROFILE=profiling release code with thin LTO and symbols
# (for perf; minutes to build where a fat-LTO release build takes 12-18); default release.
# NO_BUILD=1 uses what is built already (build.rs watches the git refs, so on a machine where
# other worktrees commit, every run would otherwise rebuild).
# RECEIVER=PATH benchmarks another hodometer binary (e.g. an older build) with the same generator.
# MEMORY=1 runs the throughput benchmark with the store in memory (no --store): the same work
# without any disk sync, to see how much of the time the syncs take.
# RECORD=none runs it with nothing recorded at all (--record none: HTTP, decoding and validation
# only): the most any store could reach with this generator on this machine.
#
# Besides the generator's figures, the throughput run prints the receiver's CPU time during the
# load per 1000 events (user + system, from /proc): a figure that does not depend on how much
# of the shared cores the generator took. It also prints the store's disk syncs and events per
# sync when the receiver exports them.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${PROFILE:-release}
if [ -n "${NO_BUILD:-}" ]; then
  :
else
  # The dev profile builds into target/debug.
  cargo build --profile "${profile/#debug/dev}" --locked --quiet --bin hodometer --example receive_load
fi
target=${CARGO_TARGET_DIR:-target}/$profile
bin=${RECEIVER:-$target/hodometer}
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

# The receiver's user + system CPU time so far, in clock ticks (fields 14 and 15 of stat; the
# command name in field 2 has no spaces here).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$receiver/stat"; }

# One counter of the receiver's /metrics, 0 when it does not export it.
counter() {
  curl -s "http://127.0.0.1:$port/metrics" | awk -v name="$1" '$1 == name {print $2; found=1} END {if (!found) print 0}'
}

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
frames)
  # The store's tables as the writer fills them: per commit 16 events from 16 senders, each
  # sender's ids in sequence, one cluster row updated. Frames are counted over commits 200-1000
  # with checkpoints off, so the WAL only grows.
  for unique in "" UNIQUE; do
    db=$dir/frames$unique.db
    awk -v unique="$unique" -v wal="$db-wal" 'BEGIN {
      q = "\047"
      print "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;"
      print "CREATE TABLE clusters (distinct_id TEXT PRIMARY KEY, events INTEGER NOT NULL) WITHOUT ROWID;"
      print "CREATE TABLE events (seq INTEGER PRIMARY KEY, insert_id TEXT NOT NULL " unique ","
      print "  distinct_id TEXT NOT NULL, time INTEGER NOT NULL, received_at INTEGER NOT NULL, json TEXT NOT NULL);"
      print "CREATE TABLE seen (insert_id TEXT PRIMARY KEY) WITHOUT ROWID;"
      print "INSERT INTO clusters VALUES (" q "c" q ", 0);"
      for (c = 0; c < 1000; c++) {
        print "BEGIN;"
        for (i = 0; i < 16; i++) {
          id = q sprintf("0000012345-%04d-%010d", i, c) q
          print "INSERT INTO seen VALUES (" id ");"
          print "INSERT INTO events (insert_id, distinct_id, time, received_at, json)"
          print "  VALUES (" id ", " q "c" q ", 1, 1, printf(" q "%0300d" q ", 0));"
        }
        print "UPDATE clusters SET events = events + 16;"
        print "COMMIT;"
        if (c == 199 || c == 999) print ".shell stat -c %s " wal
      }
    }' | sqlite3 "$db" | tail -2 | tr '\n' ' ' |
      awk -v index_="${unique:-no}" '{printf "%s index on insert_id: %.1f WAL frames (4 KiB pages) per commit of 16 events\n", index_ == "UNIQUE" ? "a UNIQUE" : "no", ($2 - $1) / 800 / 4120}'
  done
  ;;
disk)
  writes=${2:-2000}
  # Over a file already on disk, as SQLite rewrites its WAL after a checkpoint: no file growth,
  # so no metadata to journal with each write.
  dd if=/dev/zero of="$dir/synced" bs=4k count="$writes" conv=fsync status=none
  dd if=/dev/zero of="$dir/synced" bs=4k count="$writes" conv=notrunc oflag=dsync 2>&1 |
    awk -v n="$writes" '/copied/ {for (i = 1; i <= NF; i++) if ($i == "s,") s = $(i - 1)
      printf "%d synced 4 KiB writes in %s s: %.3f ms each\n", n, s, s / n * 1000}'
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
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ "${RECORD:-}" = none ]; then
    start --record none
  elif [ -n "${MEMORY:-}" ]; then
    start --record all
  else
    start --record all --store "$dir/events.db"
  fi
  ticks=$(cpu_ticks)
  syncs=$(counter hodometer_receiver_store_syncs_total)
  sync_s=$(counter hodometer_receiver_store_sync_seconds_total)
  commits=$(counter hodometer_receiver_store_commits_total)
  commit_s=$(counter hodometer_receiver_store_commit_seconds_total)
  "$load" "$port" "$events" "$connections" "$batch" | tee "$dir/load"
  sent=$(cut -d' ' -f1 "$dir/load")
  ticks=$(($(cpu_ticks) - ticks))
  syncs=$(($(counter hodometer_receiver_store_syncs_total) - syncs))
  awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v e="$sent" -v s="$syncs" \
    -v ss="$(counter hodometer_receiver_store_sync_seconds_total)" -v ss0="$sync_s" \
    -v c="$(counter hodometer_receiver_store_commits_total)" -v c0="$commits" \
    -v cs="$(counter hodometer_receiver_store_commit_seconds_total)" -v cs0="$commit_s" 'BEGIN {
    printf "receiver CPU during the load: %.2f s, %.3f s per 1000 events\n", t / hz, t / hz / e * 1000
    if (s > 0) printf "store syncs: %d, %.1f events per sync, %.0f us per sync\n", s, e / s, (ss - ss0) / s * 1e6
    if (c > c0) printf "store commits: %d, %.1f events per commit, %.0f us per commit\n", c - c0, e / (c - c0), (cs - cs0) / (c - c0) * 1e6
  }'
  kill -TERM "$receiver"
  wait "$receiver"
  receiver=
  if [ -z "${MEMORY:-}" ] && [ "${RECORD:-}" != none ]; then
    printf 'store: %s events, %s bytes\n' \
      "$(sqlite3 "$dir/events.db" 'SELECT count(*) FROM events' 2>/dev/null || echo '?')" \
      "$(du -b "$dir/events.db" | cut -f1)"
  fi
  ;;
esac
