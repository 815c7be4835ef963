#!/usr/bin/env bash
# Builds and runs the service-a GoogleTest suite: by default once, as an AddressSanitizer +
# UndefinedBehaviorSanitizer build (build/cpp-asan); on request also as a Release build
# (build/cpp-test); both -Wall -Wextra -Werror. JUnit XML goes to
# <repo>/build/test-results/cpp-{asan,release}.xml.
# Exits non-zero when a build fails or any test fails (or is skipped, under CI=true).
#
# Why the sanitizer build alone by default (so in make test and CI; docs/ci.md): it runs the
# same tests at -O2 and also fails on what a Release run cannot see (use-after-free, leaks,
# overflows, undefined behaviour), and each configuration costs minutes of a 2-core CI budget.
# The Release binary that ships is exercised anyway, end to end, by tests/native and the lab
# runs; the Release suite (-O3, NDEBUG) runs before the numbers it exists for: `make bench`.
#
#   native/cpp/test.sh            the sanitizer build (the default set)
#   native/cpp/test.sh release    only the Release build (make bench runs it)
#   native/cpp/test.sh asan release   both
#   native/cpp/test.sh asan       only the sanitizer build
#   native/cpp/test.sh tsan       ThreadSanitizer build (build/cpp-tsan; not in the default set)
#   GTEST_FILTER=... native/cpp/test.sh   a subset
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
jobs="${JOBS:-2}"
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
  local xml="$results/cpp-$name.xml"
  rm -f "$xml"
  (cd "$dir" && "$dir/service_a_tests" --gtest_output="xml:$xml" ${GTEST_FILTER:+--gtest_filter="$GTEST_FILTER"})
  local rc=$?
  if [[ ! -f "$xml" ]]; then
    summary+=("cpp-$name: the test binary crashed (exit $rc), no report")
    status=1
    return
  fi
  local tests failures errors skipped disabled passed
  tests=$(count "$xml" tests); failures=$(count "$xml" failures); errors=$(count "$xml" errors)
  disabled=$(count "$xml" disabled); skipped=$(grep -c '<skipped' "$xml" || true)
  passed=$((tests - failures - errors - skipped - ${disabled:-0}))
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
      run_config asan "$repo/build/cpp-asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZT_SANITIZE=ON ;;
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
