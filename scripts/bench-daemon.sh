#!/usr/bin/env bash
# Benchmarks of the daemon as it ships (BENCHMARKS.md, "The daemon in its image"):
#  1. one `daemon --once --no-kube` cycle against `sim` at 10^5 models, 10^4 pipelines,
#     10^3 experiments and 10^3 servers: wall time, CPU (user + sys) and peak RSS (GNU time),
#     publishing to a closed port (the issue's command) and to a loopback receiver;
#  2. the image from scripts/image.sh: its size; then, in fresh containers, the time from
#     `podman run` to the first event at a loopback receiver, and the idle RSS, cgroup memory
#     and CPU after that first cycle.
# Figures go to BENCHMARKS.md by hand.
#
#   scripts/bench-daemon.sh [RUNS]   (default 5: cycles of each kind, and containers)
#
# Environment: HODOMETER_BIN, the binary the image ships (default: target/small/hodometer built
# with only `daemon`, as scripts/image.sh builds it), and HODOMETER_PEER_BIN, the full binary that runs
# `sim` and `receive` (default: target/release/hodometer, built here).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-5}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }
target_dir="${CARGO_TARGET_DIR:-target}"
if [[ -z "${HODOMETER_BIN:-}" ]]; then
  cargo build --profile small --locked --quiet --no-default-features --bin hodometer
  HODOMETER_BIN="$target_dir/small/hodometer"
fi
if [[ -z "${HODOMETER_PEER_BIN:-}" ]]; then
  cargo build --release --locked --quiet --bin hodometer
  HODOMETER_PEER_BIN="$target_dir/release/hodometer"
fi
work=$(mktemp -d)
pids=()
flags=(--storage-driver vfs --runtime runc --cgroup-manager cgroupfs
       --root "$work/storage" --runroot "$work/run")
cleanup() {
  podman "${flags[@]}" rm -f -t 0 hodometer-bench >/dev/null 2>&1 || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# The daemon runs from its own copy, as in its pod: no other process maps the file.
bin="$work/hodometer"
cp "$HODOMETER_BIN" "$bin"
cp "$HODOMETER_PEER_BIN" "$work/peer"

# Starts `peer ARGS…` in the background and prints the port of its first "listening" line.
start() {
  local out="$work/$1.out"
  "$work/peer" "$@" >"$out" 2>/dev/null &
  pids+=($!)
  until grep -q listening "$out"; do sleep 0.01; done
  head -n 1 "$out" | grep -o '[0-9]*$'
}
receiver=$(start receive --listen 127.0.0.1:0 --record summary)
export PUBLISH_URL="http://127.0.0.1:$receiver" SCHEDULER_HOST=127.0.0.1 METRICS_LEVEL=feature \
  LOG_LEVEL=warn

echo "daemon --once --no-kube at 100000 models, 10000 pipelines, 1000 experiments, 1000 servers"
port=$(start sim --listen 127.0.0.1:0 --models 100000 --pipelines 10000 --experiments 1000 \
  --servers 1000 --seed 7)
# Each run under GNU time, in a clean environment; $1 is where the event goes.
cycles() {
  printf '%-4s %10s %12s %12s %10s %14s\n' run wall_s user_s sys_s cpu_s peak_rss_MiB
  for i in $(seq "$runs"); do
    env -i SCHEDULER_HOST=127.0.0.1 SCHEDULER_PLAINTXT_PORT="$port" PUBLISH_URL="$1" \
      /usr/bin/time -f '%e %U %S %M' -o "$work/stats" \
      "$bin" daemon --once --no-kube --publish-deadline 1s >/dev/null 2>&1 || true
    # The last line: GNU time puts "Command exited with non-zero status" above it.
    read -r wall user sys rss_kib < <(tail -n 1 "$work/stats")
    printf '%-4s %10s %12s %12s %10s %14.1f\n' "$i" "$wall" "$user" "$sys" \
      "$(echo "$user + $sys" | bc)" "$(echo "$rss_kib / 1024" | bc -l)"
  done
}
echo "publishing to a closed port (http://127.0.0.1:9):"
cycles http://127.0.0.1:9
echo "publishing to the loopback receiver:"
cycles "$PUBLISH_URL"

echo "image"
HODOMETER_BIN="$HODOMETER_BIN" HODOMETER_IMAGE_TAR="$work/image.tar" \
  PODMAN_GLOBAL_FLAGS="${flags[*]}" scripts/image.sh localhost/hodometer:bench
echo "image size: $(podman "${flags[@]}" image inspect --format '{{.Size}}' localhost/hodometer:bench) bytes;" \
  "OCI archive $(stat -c %s "$work/image.tar") bytes"
small=$(start sim --listen 127.0.0.1:0 --scenario assets/scenarios/example.json)
# The receiver's event count; empty when it did not answer (the callers wait for a number).
received() {
  curl -sf "$PUBLISH_URL/events" | grep -o '"events":[0-9]*' | head -n 1 | grep -o '[0-9]*$' || true
}
status_kb() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
# What the cgroup is charged (the kubelet's view). Page cache counts for the cgroup that first
# read it: the image's files, read when podman unpacked them, are charged elsewhere here.
cgroup_bytes() {
  local memcg file
  memcg=$(awk -F: '$2 == "memory" || $2 == "" { print $3; exit }' "/proc/$1/cgroup")
  for file in /sys/fs/cgroup/memory"$memcg"/memory.usage_in_bytes /sys/fs/cgroup"$memcg"/memory.current; do
    if [[ -r "$file" ]]; then cat "$file"; return; fi
  done
  echo "?"
}
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
echo "the image, each run a fresh container: cold start (podman run to the first event at the"
echo "receiver), then after 30 s idle: memory (kB, the cgroup in bytes) and CPU ticks of the last 20 s"
printf '%-4s %14s %8s %8s %8s %14s %10s\n' run cold_start_ms VmRSS RssAnon RssFile cgroup_bytes idle_ticks
for i in $(seq "$runs"); do
  before=""
  until [[ -n "$before" ]]; do before=$(received); done
  t0=$(date +%s.%N)
  podman "${flags[@]}" run --detach --name hodometer-bench --network host --read-only \
    --user 1000:1000 --cap-drop ALL --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    --env METRICS_LEVEL --env LOG_LEVEL --env PUBLISH_URL --env SCHEDULER_HOST \
    --env SCHEDULER_PLAINTXT_PORT="$small" localhost/hodometer:bench >/dev/null
  until now=$(received) && [[ -n "$now" && "$now" != "$before" ]]; do sleep 0.005; done
  t1=$(date +%s.%N)
  pid=$(podman "${flags[@]}" inspect --format '{{.State.Pid}}' hodometer-bench)
  sleep 10
  t_before=$(ticks "$pid")
  sleep 20
  printf '%-4s %14.0f %8s %8s %8s %14s %10s\n' "$i" "$(echo "($t1 - $t0) * 1000" | bc -l)" \
    "$(status_kb "$pid" VmRSS)" "$(status_kb "$pid" RssAnon)" "$(status_kb "$pid" RssFile)" \
    "$(cgroup_bytes "$pid")" "$(( $(ticks "$pid") - t_before ))"
  podman "${flags[@]}" rm -f -t 0 hodometer-bench >/dev/null
done
