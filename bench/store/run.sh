#!/bin/sh
# Runs the store benchmark from an optimised, non-sanitized build and keeps its JSON result.
# Usage: bench/store/run.sh [build-dir] [--quick]   (default build dir: build-bench)
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build-bench}
shift || true
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLCM_SANITIZE=OFF >/dev/null
cmake --build "$build" --target bench_store -j"$(nproc)" >/dev/null
"$build/bin/bench_store" "$@" | tee "$build/bench_store.out"
tail -n 1 "$build/bench_store.out" > "$build/bench_store.json"
echo "JSON written to $build/bench_store.json"
