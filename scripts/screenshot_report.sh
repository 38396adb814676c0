#!/usr/bin/env bash
# Screenshot a report.html in headless Chromium (Debian package `chromium`).
#
#   bash scripts/screenshot_report.sh REPORT.html OUT.png [WIDTH,HEIGHT]
#
# The window size defaults to 1200,2000; the page is rendered from file:// with the network, GPU, sync and
# component updates off, in a throwaway profile.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]" >&2
  exit 2
fi
HTML=$(realpath "$1")
OUT_PNG=$(realpath -m "$2")
SIZE=${3:-1200,2000}
BROWSER=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$BROWSER" ]; then
  echo "$0: no chromium found (apt-get install -y chromium, or set CHROMIUM)" >&2
  exit 3
fi
[ -f "$HTML" ] || { echo "$0: $HTML not found" >&2; exit 2; }
PROFILE=$(mktemp -d)
trap 'rm -rf "$PROFILE"' EXIT
"$BROWSER" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$PROFILE" --hide-scrollbars \
    --screenshot="$OUT_PNG" --window-size="$SIZE" "file://$HTML" >/dev/null 2>&1
[ -s "$OUT_PNG" ] || { echo "$0: chromium wrote no screenshot" >&2; exit 1; }
echo "$OUT_PNG"
