#!/usr/bin/env bash
# Builds service-a (Release) into <repo>/build/cpp and copies the binary to
# <repo>/build/service-a. Also builds build/cpp/bench_crl_handshake.
# -Werror when CI=true or ZT_WERROR=ON. Gentle on the machine: -j2 (override with JOBS).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$repo/build/cpp"
jobs="${JOBS:-2}"
werror="${ZT_WERROR:-$([[ "${CI:-}" == "true" ]] && echo ON || echo OFF)}"

mkdir -p "$repo/build"
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DZT_WERROR="$werror" -DZT_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target service-a bench_crl_handshake
cp "$build/service-a" "$repo/build/service-a.tmp"
mv -f "$repo/build/service-a.tmp" "$repo/build/service-a"
echo "built $repo/build/service-a"
