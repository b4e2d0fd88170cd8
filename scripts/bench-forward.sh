#!/usr/bin/env bash
# Benchmark: one `hodometer collect` through hodometer's own port-forward (Service → EndpointSlice
# → pod → WebSocket v4.channel.k8s.io through the simulator's Kubernetes stand-in) against the
# same collect over a direct address, at 10^5 models (issue 23). Prints, per run and mode, wall
# time, client CPU (user + system) and peak RSS from GNU time, then the forward/direct ratios of
# the medians. Both modes read the Kubernetes stand-in too; only the scheduler's path differs.
#
#   scripts/bench-forward.sh [RUNS]   (default 5; PROFILE=release for the fat-LTO build,
#                                      default profiling: thin LTO, built in minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-5}
profile=${PROFILE:-profiling}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }
[ -n "${NO_BUILD:-}" ] || cargo build --profile "$profile" --locked --quiet
bin=${BIN:-target/$profile/hodometer}

work=$(mktemp -d)
out="$work/sim.out"
"$bin" sim --listen 127.0.0.1:0 --models 100000 --pipelines 10000 --experiments 1000 \
  --servers 1000 --seed 7 --kube-listen 127.0.0.1:0 --kubeconfig-out "$work/kubeconfig" \
  >"$out" 2>/dev/null &
sim=$!
trap 'kill $sim 2>/dev/null; rm -rf "$work"' EXIT
until [ "$(grep -c listening "$out")" = 2 ]; do sleep 0.01; done
port=$(head -n 1 "$out" | grep -o '[0-9]*$')

declare -A cpu wall
for mode in direct forward; do
  echo "collect, scheduler $mode"
  printf '%-4s %10s %12s %12s %14s\n' run wall_s user_s sys_s peak_rss_MiB
  args=(--level feature --log-level warn)
  [ "$mode" = direct ] && args+=(--scheduler-port "$port")
  for i in $(seq "$runs"); do
    stats="$work/stats"
    env -i PATH="$PATH" KUBECONFIG="$work/kubeconfig" /usr/bin/time -f '%e %U %S %M' -o "$stats" \
      "$bin" collect "${args[@]}" >"$work/event.json"
    grep -q '"model_count":' "$work/event.json" || { echo "no model_count via $mode" >&2; exit 1; }
    read -r w user sys rss_kib <"$stats"
    printf '%-4s %10s %12s %12s %14.1f\n' "$i" "$w" "$user" "$sys" "$(echo "$rss_kib / 1024" | bc -l)"
    cpu[$mode]+="$(echo "$user + $sys" | bc) "
    wall[$mode]+="$w "
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for what in cpu wall; do
  declare -n values=$what
  d=$(echo "${values[direct]}" | median)
  f=$(echo "${values[forward]}" | median)
  printf 'median %s: direct %.3f s, forward %.3f s, ratio %.2f\n' "$what" "$d" "$f" "$(echo "$f / $d" | bc -l)"
done
