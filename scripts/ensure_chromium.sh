#!/usr/bin/env bash
# tests/browser drive the distribution's Chromium through Playwright (executable_path).
# Playwright's own browser download is not used (and not reachable here): install the
# `chromium` package with apt-get when we are root, like the other system parts.
set -euo pipefail
CHROMIUM="${DESTILL3D_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "ensure_chromium: installing chromium (apt-get) for tests/browser" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    [ -x "$CHROMIUM" ] && exit 0
fi
echo "ensure_chromium: tests/browser need Chromium at $CHROMIUM;" \
     "install it (e.g. sudo apt-get install chromium) or set DESTILL3D_CHROMIUM" >&2
exit 1
