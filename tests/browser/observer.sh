#!/usr/bin/env bash
# The observer page tested as a person sees it: the service example serves it, a child
# is crashed through the example, headless Chromium loads the page, and the rendered DOM
# must show the restart. A screenshot is saved beside the output
# (target/observer-test/observer.png). Installs Debian's chromium when it is missing.
# Run by .ci/run; needs no network beyond Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/observer-test
mkdir -p "$out"

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (Debian's package)..." >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
  ($sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium) >&2
fi

cargo build -q --example service --features observer
RUST_BACKTRACE=0 STEADFAST_SERVICE_ADDR=127.0.0.1:0 STEADFAST_OBSERVER_ADDR=127.0.0.1:0 \
  target/debug/examples/service >"$out/service.out" 2>"$out/service.err" &
service=$!
trap 'kill -TERM $service 2>/dev/null || true' EXIT

# The two addresses the example prints (within 20 s).
for _ in $(seq 1 200); do
  grep -q "the tree, live:" "$out/service.out" 2>/dev/null && break
  sleep 0.1
done
probes=$(sed -n 's|^probes on http://\([^/]*\)/livez.*|\1|p' "$out/service.out")
page=$(sed -n 's|^the tree, live: http://\([^/]*\)/.*|\1|p' "$out/service.out")
[ -n "$probes" ] && [ -n "$page" ] || { echo "the service did not start:"; cat "$out"/service.*; exit 1; }

get() { python3 -c "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())" "$1"; }
restarts() {
  get "http://$page/tree.json" | python3 -c "
import json, sys
tree = json.load(sys.stdin)['tree']['root']
print(next(c['restarts'] for c in tree['children'] if c['id'] == 'heartbeat'))"
}

[ "$(restarts)" = 0 ] || { echo "heartbeat restarted before the crash"; exit 1; }
get "http://$probes/crash" >/dev/null
for _ in $(seq 1 200); do
  [ "$(restarts)" -ge 1 ] && break
  sleep 0.1
done
[ "$(restarts)" -ge 1 ] || { echo "the crash was not restarted within 20 s"; exit 1; }

# As a person sees it: the page, rendered by a browser, after its scripts ran. With no
# background networking (this kind of machine has a closed network: Chromium's own
# connections are refused and its look-ups fail) and a fresh profile each time.
browse() {
  local profile
  profile=$(mktemp -d)
  timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$profile" \
    --hide-scrollbars --virtual-time-budget=3000 --window-size=1280,640 "$@" \
    "http://$page/" 2>>"$out/chromium.err"
  rm -rf "$profile"
}
browse --dump-dom >"$out/page.html"
browse --screenshot="$out/observer.png" >/dev/null
grep -Eq 'data-id="heartbeat" data-status="running" data-restarts="[1-9][0-9]*"' "$out/page.html" || {
  echo "the rendered page does not show heartbeat's restart:"; grep -o 'data-id="[^"]*"[^>]*' "$out/page.html"; exit 1; }
grep -q 'told to crash by GET /crash' "$out/page.html" || {
  echo "the rendered page does not show the last exit"; exit 1; }
grep -Eq 'data-kind="restarted"' "$out/page.html" || { echo "no restart among the events"; exit 1; }
[ -s "$out/observer.png" ] || { echo "no screenshot"; exit 1; }

# The service stops in order on SIGTERM, with success.
kill -TERM $service
wait $service
trap - EXIT
echo "observer page: heartbeat's restart shown in the browser; screenshot at $out/observer.png"
