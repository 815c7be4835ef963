#!/usr/bin/env bash
# Lints what the Python linters do not see: every shell script in the repository (shellcheck)
# and service-a's C++ sources (clang-tidy with native/cpp/.clang-tidy). Exits non-zero on any
# finding, naming the tool that found it. Installs nothing: a missing tool is a failure (with
# CI=true and on a developer's machine alike; lint must never pass by not running).
#
#   scripts/lint-native.sh            both tools
#   scripts/lint-native.sh shell      shellcheck only
#   scripts/lint-native.sh cpp        clang-tidy only
#
# clang-tidy runs on native/cpp/src/*.cc (the headers in src/ through them), JOBS at a time
# (default 2), against the compile database of a configure-only CMake tree in build/cpp-lint,
# and on the fuzz targets native/cpp/fuzz/*.cc (clang's configure-only tree build/cpp-fuzz-lint).
# The tests are not linted: they are exercised by two builds with -Werror and by ASan/UBSan.
# About 2.5 minutes on 2 idle cores, most of it the path-sensitive analyzer.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
jobs="${JOBS:-2}"
what="${1:-all}"
failed=()

need() {  # need TOOL PACKAGE: the tool is on PATH, or this run fails with one clear line
  if command -v "$1" >/dev/null 2>&1; then return 0; fi
  if [[ "${CI:-}" == "true" ]]; then
    echo "lint-native: $1 is missing in CI; add the Debian package '$2' to the CI image" >&2
  else
    echo "lint-native: $1 is not installed (apt-get install -y $2); native lint did NOT run" >&2
  fi
  failed+=("$1: not installed")
  return 1
}

lint_shell() {
  need shellcheck shellcheck || return
  local scripts=()
  # Every tracked file that is a shell script: *.sh, or a shell shebang (.ci/run has no extension).
  while IFS= read -r -d '' f; do
    if [[ "$f" == *.sh ]] || head -n1 -- "$repo/$f" 2>/dev/null | grep -Eq '^#!.*[/ ](ba|da|k)?sh\b'; then
      scripts+=("$f")
    fi
  done < <(git -C "$repo" ls-files -z)
  echo "== shellcheck: ${#scripts[@]} scripts"
  if ! (cd "$repo" && shellcheck -x "${scripts[@]}"); then
    failed+=("shellcheck: findings above")
  fi
}

lint_cpp() {
  need clang-tidy clang-tidy || return
  local build="$repo/build/cpp-lint" log
  if ! cmake -S "$repo/native/cpp" -B "$build" -DCMAKE_BUILD_TYPE=Release -DZT_BUILD_TESTS=OFF \
       -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null; then
    failed+=("clang-tidy: cmake could not configure native/cpp (compile database missing)")
    return
  fi
  local sources=("$repo"/native/cpp/src/*.cc)
  # The fuzz targets (native/cpp/fuzz/) build with clang only: their own configure-only tree.
  local fuzz_build="$repo/build/cpp-fuzz-lint" fuzz_sources=("$repo"/native/cpp/fuzz/*.cc)
  need clang++ clang || return
  if ! CC=clang CXX=clang++ cmake -S "$repo/native/cpp" -B "$fuzz_build" -DZT_FUZZ=ON \
       -DZT_BUILD_TESTS=OFF -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null; then
    failed+=("clang-tidy: cmake could not configure the fuzz targets (compile database missing)")
    return
  fi
  echo "== clang-tidy: ${#sources[@]} sources and ${#fuzz_sources[@]} fuzz targets, $jobs at a time"
  log="$(mktemp)"
  # --quiet drops the "N warnings generated" noise (those are suppressed non-enabled checks).
  {
    printf '%s\0' "${sources[@]}" | xargs -0 -n1 -P "$jobs" clang-tidy -p "$build" --quiet
    printf '%s\0' "${fuzz_sources[@]}" | xargs -0 -n1 -P "$jobs" clang-tidy -p "$fuzz_build" --quiet
  } >"$log" 2>&1
  local rc=$?
  # Headers are diagnosed once per source that includes them: show each finding once.
  local findings
  findings="$(grep -E '^/.*:[0-9]+:[0-9]+: (warning|error):' "$log" | sort -u)"
  if [[ $rc -ne 0 || -n "$findings" ]]; then
    cat "$log"
    echo
    echo "== clang-tidy findings (unique):"
    echo "${findings:-"(none parsed; see the output above, exit $rc)"}"
    failed+=("clang-tidy: $(grep -c . <<<"$findings") finding(s)")
  fi
  rm -f "$log"
}

case "$what" in
  all) lint_shell; lint_cpp ;;
  shell) lint_shell ;;
  cpp) lint_cpp ;;
  *) echo "usage: $0 [all|shell|cpp]" >&2; exit 2 ;;
esac

if [[ ${#failed[@]} -ne 0 ]]; then
  echo
  echo "== native lint FAILED"
  for f in "${failed[@]}"; do echo "$f"; done
  exit 1
fi
echo "== native lint clean"
