#!/bin/sh
# ctest entry of the dashboard browser tests: makes sure Debian's chromium and npm's
# playwright-core are installed (scripts/bootstrap.sh with LCM_BOOTSTRAP_BROWSER=1, then
# npm install into tests/browser/node_modules), then runs test_dashboard.py.
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
SRC="$(cd "$HERE/../.." && pwd)"
if [ ! -x /usr/bin/chromium ] || ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    LCM_BOOTSTRAP_BROWSER=1 "$SRC/scripts/bootstrap.sh"
fi
if [ ! -x /usr/bin/chromium ]; then
    echo "browser tests: /usr/bin/chromium is missing and could not be installed" >&2
    exit 1
fi
if [ ! -f "$HERE/node_modules/playwright-core/package.json" ]; then
    (cd "$HERE" && npm install --no-audit --no-fund --loglevel=error)
fi
exec python3 "$HERE/test_dashboard.py"
