#!/bin/sh
# Runs the system: installs what is missing, builds, and starts the local demo stack on
# loopback (Redis, moto, cml-sim, lds-sim, grading-sim, lcmd with the dashboard), loads the
# sample templates and definitions, books a wave of sessions and shows live progress.
# Ctrl-C stops everything it started. Options: scripts/demo.py --help.
set -eu
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLCM_BUILD_TESTS=ON >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)"
exec python3 scripts/demo.py "$@"
