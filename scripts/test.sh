#!/bin/sh
# Runs every test: installs what is missing, builds everything with warnings as errors and
# AddressSanitizer + UBSan, and runs ctest (unit, integration against real redis-server,
# moto and the simulators, fuzz-corpus replays, reliability suite, and the dashboard's
# browser tests in headless Chromium, which this installs when missing).
set -eu
cd "$(dirname "$0")/.."
LCM_BOOTSTRAP_BROWSER=1 ./scripts/bootstrap.sh
BUILD="${LCM_TEST_BUILD_DIR:-build-asan}"
JOBS="$(nproc 2>/dev/null || echo 2)"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DLCM_SANITIZE=ON -DLCM_WERROR=ON >/dev/null
cmake --build "$BUILD" -j"$JOBS"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
cd "$BUILD"
ctest --output-on-failure --timeout 900 -j"$JOBS" "$@"
