#!/usr/bin/env bash
# Try hodometer with no cluster: build it, start the simulated scheduler on a free loopback
# port, and show what `collect` would share at each level. Stops the simulator on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --quiet
bin=target/release/hodometer
work=$(mktemp -d)
"$bin" sim --listen 127.0.0.1:0 --scenario assets/scenarios/example.json \
  --kube-listen 127.0.0.1:0 --kubeconfig-out "$work/kubeconfig" >"$work/sim.out" 2>/dev/null &
sim=$!
trap 'kill $sim 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do [ "$(grep -c listening "$work/sim.out")" = 2 ] && break; sleep 0.1; done
port=$(head -n 1 "$work/sim.out" | grep -o '[0-9]*$')
# The simulator's Kubernetes stand-in, not your cluster.
export KUBECONFIG="$work/kubeconfig"
# One cluster id for every example below, as one installation would have.
export CLUSTER_ID=$(cat /proc/sys/kernel/random/uuid)

echo "== Every metric at level feature (hodometer collect --output table --level feature)"
"$bin" collect --scheduler-port "$port" --level feature --output table --log-level warn
echo
for level in cluster resource feature; do
  echo "== The event that would be sent at level $level (hodometer collect --level $level)"
  "$bin" collect --scheduler-port "$port" --level "$level" --log-level warn
  echo
done
