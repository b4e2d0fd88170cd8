#!/usr/bin/env bash
# Try hodometer with no cluster: build it, start the simulated scheduler on a free loopback
# port, and show what `collect` would share at each level. Stops the simulator on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --quiet
bin=target/release/hodometer
out=$(mktemp)
"$bin" sim --listen 127.0.0.1:0 --scenario assets/scenarios/example.json >"$out" 2>/dev/null &
sim=$!
trap 'kill $sim 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 50); do grep -q listening "$out" && break; sleep 0.1; done
port=$(grep -o '[0-9]*$' "$out")

echo "== Every metric at level feature (hodometer collect --output table --level feature)"
"$bin" collect --scheduler-port "$port" --no-kube --level feature --output table --log-level warn
echo
for level in cluster resource feature; do
  echo "== The event that would be sent at level $level (hodometer collect --level $level)"
  "$bin" collect --scheduler-port "$port" --no-kube --level "$level" --log-level warn
  echo
done
