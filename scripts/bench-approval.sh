#!/usr/bin/env bash
# How long an approval in the inspector takes to be written and acknowledged by the in-cluster
# reporter, in `hodometer demo` (whose reporter sends, and re-reads its consent, every 5 s).
# Drives the real inspector in tmux; figures go to BENCHMARKS.md by hand.
#
#   scripts/bench-approval.sh [RUNS]   (default 3; HODOMETER_BIN to pick the binary)
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
bin=${HODOMETER_BIN:-target/debug/hodometer}
[[ -x "$bin" ]] || cargo build --locked --quiet
state=$(mktemp -d)
socket="hodometer-bench-approval-$$"
trap 'tmux -L "$socket" kill-server 2>/dev/null || true; rm -rf "$state"' EXIT

screen() { tmux -L "$socket" capture-pane -p -t demo; }
until_seen() { until screen | grep -q "$1"; do sleep 0.05; done; }
now() { date +%s.%N; }

for i in $(seq "$runs"); do
  tmux -L "$socket" new-session -d -s demo -x 160 -y 48 \
    "XDG_STATE_HOME=$state $bin demo --refresh 1s"
  until_seen "level cluster (environment); last"
  tmux -L "$socket" send-keys -t demo 2
  tmux -L "$socket" send-keys -t demo a
  until_seen "approve for the in-cluster reporter"
  start=$(now)
  tmux -L "$socket" send-keys -t demo y
  until_seen "written (resourceVersion"
  written=$(now)
  until_seen "acknowledged by the reporter"
  acknowledged=$(now)
  printf 'run %s: written after %.2f s, acknowledged after %.2f s\n' "$i" \
    "$(echo "$written - $start" | bc)" "$(echo "$acknowledged - $start" | bc)"
  tmux -L "$socket" kill-session -t demo
done
