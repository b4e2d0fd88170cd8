#!/usr/bin/env bash
# Benchmark of the history (BENCHMARKS.md, "The history in the cluster"): what one daemon cycle
# costs with an empty and with a full ledger (hodometer-ledger at its byte budget): the size of
# the merge patch it sends, CPU (user + sys) and peak RSS of a `daemon --once` process (GNU time),
# then a daemon at `--interval 1s` over 20 cycles: its peak RSS (VmHWM) and CPU ticks.
#
#   scripts/bench-ledger.sh [RUNS]   (default 5 --once runs of each kind)
#
# Environment: HODOMETER_BIN, the daemon's binary (default: target/debug/hodometer, a debug
# build: label the figures so; PROFILE=small builds the image's daemon-only binary instead), and
# HODOMETER_PEER_BIN, the full binary that runs `sim` and `receive` (default target/debug).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-5}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }
command -v curl >/dev/null && command -v jq >/dev/null || { echo "needs curl and jq" >&2; exit 1; }
target_dir="${CARGO_TARGET_DIR:-target}"
if [[ -z "${HODOMETER_PEER_BIN:-}" ]]; then
  cargo build --locked --quiet --bin hodometer
  HODOMETER_PEER_BIN="$target_dir/debug/hodometer"
fi
if [[ -z "${HODOMETER_BIN:-}" ]]; then
  if [[ "${PROFILE:-debug}" == small ]]; then
    cargo build --profile small --locked --quiet --no-default-features --bin hodometer
    HODOMETER_BIN="$target_dir/small/hodometer"
  else
    HODOMETER_BIN="$HODOMETER_PEER_BIN"
  fi
fi
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [[ -n "${KEEP:-}" ]] || rm -rf "$work"; echo "work: $work" >&2
}
trap cleanup EXIT
bin="$work/hodometer"
cp "$HODOMETER_BIN" "$bin"
cp "$HODOMETER_PEER_BIN" "$work/peer"

start() {
  local out="$work/$1.out"
  "$work/peer" "$@" >"$out" 2>/dev/null &
  pids+=($!)
  until grep -q listening "$out" 2>/dev/null; do sleep 0.01; done
}
start receive --listen 127.0.0.1:0 --record summary
receiver=$(head -n 1 "$work/receive.out" | grep -o '[0-9]*$')
start sim --listen 127.0.0.1:0 --scenario assets/scenarios/example.json \
  --kube-listen 127.0.0.1:0 --kubeconfig-out "$work/kc"
until grep -q kubernetes "$work/sim.out"; do sleep 0.01; done
scheduler=$(grep scheduler "$work/sim.out" | head -n 1 | grep -o '[0-9]*$')
kube=$(grep kubernetes "$work/sim.out" | head -n 1 | grep -o '127.0.0.1:[0-9]*')
# The stand-in's administrator (random token per run, in the kubeconfig's hodometer-sim-admin).
token=$(grep -A2 'name: hodometer-sim-admin$' "$work/kc" | awk '/token:/ { print $2 }' | tail -n 1)
admin=(-sf -H "Authorization: Bearer $token" -H "Content-Type: application/json")
configmaps="http://$kube/api/v1/namespaces/seldon-mesh/configmaps"
for name in hodometer-consent hodometer-status hodometer-ledger; do
  curl "${admin[@]}" -X POST "$configmaps" -d "{\"metadata\":{\"name\":\"$name\"}}" >/dev/null
done

daemon=(env -i METRICS_LEVEL=feature LOG_LEVEL=debug LOG_FORMAT=json
  "$bin" daemon --kubeconfig "$work/kc" --scheduler-host 127.0.0.1
  --scheduler-port "$scheduler" --publish-url "http://127.0.0.1:$receiver")
once() {
  printf '%-4s %12s %12s %10s %14s %12s %14s\n' run patch_bytes ledger_bytes user_s sys_s peak_rss_MiB entries
  for i in $(seq "$runs"); do
    /usr/bin/time -f '%U %S %M' -o "$work/stats" "${daemon[@]}" --once 2>"$work/log" >/dev/null || true
    read -r user sys rss_kib < <(tail -n 1 "$work/stats")
    local line
    line=$(grep '"history appended"' "$work/log" | tail -n 1)
    printf '%-4s %12s %12s %10s %14s %12.1f %14s\n' "$i" \
      "$(jq -r .patch_bytes <<<"$line")" "$(jq -r .ledger_bytes <<<"$line")" "$user" "$sys" \
      "$(echo "$rss_kib / 1024" | bc -l)" \
      "$(curl "${admin[@]}" "$configmaps/hodometer-ledger" | jq '.data | length')"
  done
}
echo "daemon --once, empty ledger at the start of run 1 (binary: $HODOMETER_BIN)"
once

# Fill the ledger to its budget with copies of the last send, chained as the daemon chains.
python3 - "$configmaps" "$token" <<'PY'
import hashlib, json, sys, urllib.request
url = sys.argv[1] + "/hodometer-ledger"
headers = {"Authorization": "Bearer " + sys.argv[2]}
cm = json.load(urllib.request.urlopen(urllib.request.Request(url, headers=headers)))
data = cm.get("data", {})
last_key = max(k for k in data if k.startswith("entry-"))
template = json.loads(data[last_key])
seq, prev = template["seq"], hashlib.sha256(data[last_key].encode()).hexdigest()
patch, size = {}, sum(len(k) + len(json.dumps(v)) + 4 for k, v in data.items())
while size < 300 * 1024:  # past the 256 KiB budget: the next append drops the oldest
    seq += 1
    entry = dict(template, seq=seq, prev=prev)
    value = json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
    prev = hashlib.sha256(value.encode()).hexdigest()
    key = "entry-%010d" % seq
    patch[key] = value
    size += len(key) + len(json.dumps(value)) + 4
body = json.dumps({"data": patch}).encode()
req = urllib.request.Request(url, data=body, method="PATCH",
    headers=dict(headers, **{"Content-Type": "application/merge-patch+json"}))
urllib.request.urlopen(req)
print(f"ledger filled: {len(data) + len(patch)} entries, ~{size // 1024} KiB")
PY
echo "daemon --once, full ledger (each run appends one entry and drops the oldest)"
once

echo "daemon --interval 1s, full ledger, 20 cycles: peak RSS (VmHWM) and CPU ticks (1/100 s)"
"${daemon[@]}" --interval 1s 2>"$work/long.log" >/dev/null &
pid=$!
pids+=($pid)
until [[ $(grep -c '"history appended"' "$work/long.log") -ge 20 ]]; do sleep 0.2; done
hwm=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status")
rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status")
ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
kill "$pid"
patches=$(grep '"history appended"' "$work/long.log" | jq -s 'map(.patch_bytes) | "\(min)-\(max)"')
echo "VmHWM ${hwm} kB, VmRSS ${rss} kB, ${ticks} ticks over 20 cycles, patch bytes ${patches}"
"$work/peer" history verify --kubeconfig "$work/kc"
