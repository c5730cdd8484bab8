#!/bin/sh
# Runs the system: installs what is missing, builds, and starts lcmd on loopback with its
# embedded Redis (data in .run/). It prints where it listens and the admin token.
set -eu
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)"
mkdir -p .run
export LCM_DATA_DIR="${LCM_DATA_DIR:-$PWD/.run/data}"
exec build/bin/lcmd "$@"
