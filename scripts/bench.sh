#!/usr/bin/env bash
# Benchmark: `hodometer collect` against `hodometer sim` at scale (SPEC 10).
# Prints the simulator's start-up time and, for each run of collect, its wall time, client CPU
# (user + system) and peak RSS, as measured by GNU time. Figures go to BENCHMARKS.md by hand.
#
#   scripts/bench.sh [RUNS]      (default 5; sizes via MODELS, PIPELINES, EXPERIMENTS, SERVERS)
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-5}
models=${MODELS:-100000}
pipelines=${PIPELINES:-10000}
experiments=${EXPERIMENTS:-1000}
servers=${SERVERS:-1000}

command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }
cargo build --release --locked --quiet
bin=target/release/hodometer

work=$(mktemp -d)
out="$work/sim.out"
start=$(date +%s.%N)
"$bin" sim --listen 127.0.0.1:0 --models "$models" --pipelines "$pipelines" \
  --experiments "$experiments" --servers "$servers" --seed 7 \
  --kube-listen 127.0.0.1:0 --kubeconfig-out "$work/kubeconfig" >"$out" 2>/dev/null &
sim=$!
trap 'kill $sim 2>/dev/null; rm -rf "$work"' EXIT
until [ "$(grep -c listening "$out")" = 2 ]; do sleep 0.01; done
ready=$(date +%s.%N)
port=$(head -n 1 "$out" | grep -o '[0-9]*$')
printf 'sim: %s models, %s pipelines, %s experiments, %s servers ready in %.2f s\n' \
  "$models" "$pipelines" "$experiments" "$servers" "$(echo "$ready - $start" | bc)"

# Scheduler only, then scheduler and the Kubernetes stand-in (paged lists of every Server's
# StatefulSet or Deployment, and the nodes), read concurrently.
for mode in no-kube kube; do
  echo "collect --$mode"
  printf '%-4s %10s %12s %12s %14s\n' run wall_s user_s sys_s peak_rss_MiB
  for i in $(seq "$runs"); do
    stats="$work/stats"
    KUBECONFIG="$work/kubeconfig" /usr/bin/time -f '%e %U %S %M' -o "$stats" \
      "$bin" collect --scheduler-port "$port" "--$mode" --level feature --log-level warn >/dev/null
    read -r wall user sys rss_kib <"$stats"
    printf '%-4s %10s %12s %12s %14.1f\n' "$i" "$wall" "$user" "$sys" "$(echo "$rss_kib / 1024" | bc -l)"
  done
done
