#!/usr/bin/env bash
# Builds and runs the service-a GoogleTest suite: by default once, as an AddressSanitizer +
# UndefinedBehaviorSanitizer build (build/cpp-asan); on request also as a Release build
# (build/cpp-test); both -Wall -Wextra -Werror. JUnit XML goes to
# <repo>/build/test-results/cpp-{asan,release}.xml.
# Exits non-zero when a build fails or any test fails (or is skipped, under CI=true).
#
# Why the sanitizer build alone by default (so in make test and CI; docs/ci.md): it runs the
# same tests (at -O1 -g1, below) and also fails on what a Release run cannot see (use-after-free,
# leaks, overflows, undefined behaviour), and each configuration costs minutes of a 2-core CI budget.
# The Release binary that ships is exercised anyway, end to end, by tests/native and the lab
# runs; the Release suite (-O3, NDEBUG) runs before the numbers it exists for: `make bench`.
#
#   native/cpp/test.sh            the sanitizer build (the default set)
#   native/cpp/test.sh release    only the Release build (make bench runs it)
#   native/cpp/test.sh asan release   both
#   native/cpp/test.sh asan       only the sanitizer build
#   native/cpp/test.sh tsan       ThreadSanitizer build (build/cpp-tsan; not in the default set)
#   GTEST_FILTER=... native/cpp/test.sh   a subset
#   CPP_SHARDS=1 native/cpp/test.sh       one test process instead of two (below)
#
# The tests run in CPP_SHARDS (default 2) processes at once, gtest's own sharding
# (GTEST_TOTAL_SHARDS/GTEST_SHARD_INDEX: shard i runs every test whose index is i modulo the
# count), one JUnit file per shard (cpp-<config>.shard<i>.xml) and one log per shard, printed one
# after the other when both have ended. Safe because every test takes its ports from the kernel
# (127.0.0.1:0) and its files from mkdtemp, and each process makes its own test PKI; worth it
# because a test spends much of its time waiting on a service-a child (start, handshakes, a
# reload), so two at a time keep two cores busy (issue 17; docs/ci.md has the figures).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
jobs="${JOBS:-2}"
shards="${CPP_SHARDS:-2}"
if ! [[ "$shards" =~ ^[1-9][0-9]*$ ]]; then
  echo "CPP_SHARDS must be a positive whole number (got '$shards')" >&2
  exit 2
fi
results="$repo/build/test-results"
mkdir -p "$results"
configs=("${@:-asan}")
read -r -a configs <<<"${configs[*]}"

summary=()
status=0

count() {  # attribute of the <testsuites> element of a JUnit file
  sed -n "s/.*<testsuites[^>]* $2=\"\([0-9]*\)\".*/\1/p" "$1" | head -1
}

run_config() {
  local name="$1" dir="$2"; shift 2
  echo "== service-a tests: $name ($dir)"
  if ! cmake -S "$here" -B "$dir" -DZT_WERROR=ON -DZT_BUILD_TESTS=ON "$@" >/dev/null ||
     ! cmake --build "$dir" -j "$jobs" --target service_a_tests; then
    summary+=("cpp-$name: build FAILED")
    status=1
    return
  fi
  rm -f "$results/cpp-$name".xml "$results/cpp-$name".shard*.xml
  local i pids=() rcs=() logs=() xmls=()
  for ((i = 0; i < shards; i++)); do
    xmls[i]="$results/cpp-$name.shard$i.xml"
    logs[i]="$dir/shard$i.log"
    (cd "$dir" && GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i \
      "$dir/service_a_tests" --gtest_output="xml:${xmls[i]}" ${GTEST_FILTER:+--gtest_filter="$GTEST_FILTER"}) \
      >"${logs[i]}" 2>&1 &
    pids[i]=$!
  done
  for ((i = 0; i < shards; i++)); do
    wait "${pids[i]}"
    rcs[i]=$?
  done
  local rc=0 tests=0 failures=0 errors=0 skipped=0 disabled=0 n
  for ((i = 0; i < shards; i++)); do
    echo "-- service-a tests: $name, shard $((i + 1)) of $shards (exit ${rcs[i]})"
    cat "${logs[i]}"
    if [[ ${rcs[i]} -ne 0 ]]; then rc=${rcs[i]}; fi
    if [[ ! -f "${xmls[i]}" ]]; then
      summary+=("cpp-$name: shard $((i + 1)) of $shards: the test binary crashed (exit ${rcs[i]}), no report")
      status=1
      continue
    fi
    n=$(count "${xmls[i]}" tests); tests=$((tests + n))
    n=$(count "${xmls[i]}" failures); failures=$((failures + n))
    n=$(count "${xmls[i]}" errors); errors=$((errors + n))
    n=$(count "${xmls[i]}" disabled); disabled=$((disabled + ${n:-0}))
    n=$(grep -c '<skipped' "${xmls[i]}" || true); skipped=$((skipped + n))
  done
  # The shards together must have run every test the binary lists (none lost between them).
  local listed
  listed=$("$dir/service_a_tests" --gtest_list_tests ${GTEST_FILTER:+--gtest_filter="$GTEST_FILTER"} | grep -c '^  ')
  if [[ $tests -ne $listed ]]; then
    summary+=("cpp-$name: the shards reported $tests tests, the binary lists $listed")
    status=1
  fi
  local passed=$((tests - failures - errors - skipped - disabled))
  summary+=("cpp-$name: $passed passed, $((failures + errors)) failed, $skipped skipped")
  if [[ $rc -ne 0 || $failures -ne 0 || $errors -ne 0 ]]; then status=1; fi
  if [[ "${CI:-}" == "true" && $skipped -ne 0 ]]; then
    summary+=("cpp-$name: $skipped skipped under CI (nothing may skip in CI)")
    status=1
  fi
}

for c in "${configs[@]}"; do
  case "$c" in
    release) run_config release "$repo/build/cpp-test" -DCMAKE_BUILD_TYPE=Release -DZT_SANITIZE=OFF ;;
    asan)
      export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1"
      export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
      # -O1 -g1: -O1 is what AddressSanitizer's documentation names for reasonable speed; -g1
      # keeps the line tables its stack traces need. The same checks at about half the compile
      # CPU of RelWithDebInfo's -O2 -g (the build is most of CI's longest track; docs/ci.md).
      run_config asan "$repo/build/cpp-asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZT_SANITIZE=ON \
        "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" ;;
    tsan)
      export TSAN_OPTIONS="halt_on_error=1"
      run_config tsan "$repo/build/cpp-tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZT_SANITIZE=OFF \
        -DCMAKE_CXX_FLAGS=-fsanitize=thread -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread ;;
    *) echo "unknown configuration '$c' (release|asan|tsan)"; exit 2 ;;
  esac
done

echo
echo "== service-a test summary"
for line in "${summary[@]}"; do echo "$line"; done
exit $status
