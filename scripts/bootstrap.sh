#!/bin/sh
# Installs the Debian packages LCM needs to build, test and run its demo.
# Idempotent: only packages that are missing are installed. Run as root on Debian 12.
set -eu

PKGS="build-essential cmake pkg-config liblua5.4-dev lua5.4 libevent-dev libhiredis-dev \
libcurl4-openssl-dev libcjson-dev libcmocka-dev libssl-dev libexpat1-dev redis-server \
redis-sentinel redis-tools wrk curl jq procps psmisc"

if [ "${LCM_BOOTSTRAP_BROWSER:-0}" = 1 ]; then
    PKGS="$PKGS chromium"
    # Node.js may come from another source (NodeSource bundles npm and conflicts with
    # Debian's npm package): only ask apt when the commands are missing.
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        PKGS="$PKGS nodejs npm"
    fi
fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "bootstrap: missing packages:$missing (run as root to install)" >&2
        exit 1
    fi
    echo "bootstrap: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Debian's redis-server package starts a system instance; LCM never uses it (tests and
# the demo run their own servers on free ports), so leave it alone.

if ! python3 -c 'import moto, boto3, flask' 2>/dev/null; then
    echo "bootstrap: python3 with moto, boto3 and flask is required (moto's server is the EC2 stand-in)" >&2
    exit 1
fi
echo "bootstrap: ok"
