#!/usr/bin/env bash
# Picture of the inspector for README: runs `hodometer demo` in a detached tmux session, waits
# until the table is drawn, captures the pane with its colours and renders it as a PNG.
#
#   scripts/screenshot.sh [OUT.png] [COLS] [ROWS]    (default docs/inspector.png 120 36)
#
# Needs Debian's tmux, aha (ANSI to HTML) and chromium (headless). The demo is a simulated
# installation on loopback ports: nothing leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-docs/inspector.png}
case $out in /*) ;; *) out=$PWD/$out ;; esac
cols=${2:-120}
rows=${3:-36}
for tool in tmux aha chromium; do
  command -v "$tool" >/dev/null || { echo "screenshot.sh: needs $tool (apt-get install $tool)" >&2; exit 2; }
done

cargo build --locked --quiet
bin=$PWD/target/debug/hodometer

work=$(mktemp -d)
# A tmux server of our own (its socket under tmux's private per-user directory), so nothing
# else the user runs in tmux is touched and everything is gone when we stop it.
socket="hodometer-shot-$$"
tmx() { tmux -L "$socket" "$@"; }
cleanup() {
  tmx kill-server 2>/dev/null || true
  rm -f "${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/$socket" # kill-server leaves its socket file behind
  rm -rf "$work"
}
trap cleanup EXIT

# A fixed seed, so the installation shown is the same each time (the demo's cluster id is random
# per run); the demo's state (its log, its kept sends) goes to the temporary directory.
tmx -f /dev/null new-session -d -s demo -x "$cols" -y "$rows" \
  "env TERM=xterm-256color XDG_STATE_HOME=$work/state $bin demo --seed 1"

# Drawn: the table has its values and the reporter has answered (its line says when it sends next).
ready() {
  local pane
  pane=$(tmx capture-pane -t demo -p 2>/dev/null) || return 1
  grep -q 'model_count' <<<"$pane" && grep -q 'inference_server_name' <<<"$pane" \
    && grep -Eq 'reporter.*(next|sent|ago)' <<<"$pane" && ! grep -q 'connecting' <<<"$pane"
}
for _ in $(seq 300); do
  ready && break
  sleep 0.2
done
if ! ready; then
  echo "screenshot.sh: the demo did not draw its table within 60 s; the screen was:" >&2
  tmx capture-pane -t demo -p >&2 || true
  exit 1
fi
sleep 1 # one more refresh of the sparklines and ages, then capture

tmx capture-pane -t demo -e -p >"$work/pane.ansi"
tmx send-keys -t demo q
aha --black --no-header <"$work/pane.ansi" >"$work/body.html"

# One terminal cell is 9×18 CSS pixels at this font size; 8 px of margin around.
width=$((cols * 9 + 16))
height=$((rows * 18 + 16))
{
  echo '<!doctype html><html><head><meta charset="utf-8"><style>'
  echo 'body{background:#000;color:#ddd;margin:8px;overflow:hidden}'
  echo 'pre{font-family:"DejaVu Sans Mono",monospace;font-size:15px;line-height:18px;margin:0}'
  echo '</style></head><body><pre>'
  cat "$work/body.html"
  echo '</pre></body></html>'
} >"$work/page.html"

mkdir -p "$(dirname "$out")"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --user-data-dir="$work/chromium" --window-size="$width,$height" \
  --screenshot="$work/shot.png" "file://$work/page.html" >/dev/null 2>&1
mv "$work/shot.png" "$out"
echo "$out"
