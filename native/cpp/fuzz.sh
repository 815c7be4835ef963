#!/usr/bin/env bash
# Builds service-a's libFuzzer targets (native/cpp/fuzz/, clang, ASan + UBSan) into
# <repo>/build/cpp-fuzz and runs each for a bounded time. docs/testing.md says what each
# target covers and how to run one longer.
#
#   native/cpp/fuzz.sh [SECONDS]          every target, SECONDS each (default 30)
#   FUZZ_TARGETS="policy crl_index" native/cpp/fuzz.sh 600     a subset, longer
#   FUZZ_PARALLEL=1 native/cpp/fuzz.sh    one target at a time (default: 2 at once)
#
# libFuzzer runs one thread, so on CI's 2 cores two targets fuzz at once (FUZZ_PARALLEL), each
# for its full SECONDS on a core of its own: the same fuzzing per target in half the wall time
# (issue 17). Each target's output goes to its own log, printed in target order.
# Per target: first the kept regression inputs (fuzz/regressions/<target>/, crashes found
# before and fixed) are replayed once; then libFuzzer runs from the committed seed corpus
# (fuzz/corpus/<target>/, read-only: new inputs go to a temporary directory removed at the end)
# with the target's dictionary when it has one. A line per target gives executions per
# second, coverage (edges) and features; the table is also written to
# build/test-results/fuzz.tsv. Exits non-zero on any crash, leak, timeout or sanitizer report;
# the input that caused it is left in build/cpp-fuzz/crashes/<target>/ (fix the bug, add a
# GoogleTest case, and keep the input under fuzz/regressions/<target>/).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$repo/build/cpp-fuzz"
seconds="${1:-30}"
jobs="${JOBS:-2}"
parallel="${FUZZ_PARALLEL:-2}"
read -r -a targets <<<"${FUZZ_TARGETS:-http_request spiffe_id policy crl_index}"

if ! [[ "$seconds" =~ ^[1-9][0-9]*$ && "$parallel" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS] (a positive whole number; default 30; FUZZ_PARALLEL likewise)" >&2
  exit 2
fi
if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz.sh: clang++ is not installed (apt-get install -y clang; native/cpp/apt-packages.txt)" >&2
  exit 1
fi

echo "== fuzz: building the targets ($build)"
if ! CC=clang CXX=clang++ cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
       -DZT_FUZZ=ON -DZT_BUILD_TESTS=OFF -DZT_WERROR=ON >/dev/null ||
   ! cmake --build "$build" -j "$jobs" --target fuzz_targets; then
  echo "fuzz.sh: the build FAILED" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
results="$repo/build/test-results"
mkdir -p "$results"
tsv="$results/fuzz.tsv"
printf 'target\tseconds\texecs\texec_per_sec\tcov\tft\tresult\n' >"$tsv"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# fuzz_one TARGET: replays the kept inputs, then fuzzes; prints to stdout (the caller's per-target
# file) and leaves the summary line in $work/TARGET.line, the TSV row in $work/TARGET.tsv, and
# exits non-zero when the target failed.
fuzz_one() {
  local t="$1"
  local bin="$build/fuzz/fuzz_$t" seeds="$here/fuzz/corpus/$t" regressions="$here/fuzz/regressions/$t"
  local crashes="$build/crashes/$t" log="$work/$t.log"
  if [[ ! -x "$bin" || ! -d "$seeds" ]]; then
    echo "fuzz.sh: unknown target '$t' (no $bin or no $seeds)"
    echo "$t: unknown target" >"$work/$t.line"
    return 1
  fi
  mkdir -p "$crashes"
  local flags=(-timeout=10 -rss_limit_mb=2048 -artifact_prefix="$crashes/" -print_final_stats=1)
  [[ -f "$here/fuzz/$t.dict" ]] && flags+=(-dict="$here/fuzz/$t.dict")

  local kept
  mapfile -t kept < <(find "$regressions" -type f 2>/dev/null | sort)
  if [[ ${#kept[@]} -gt 0 ]]; then
    echo "== fuzz $t: replaying ${#kept[@]} regression input(s)"
    if ! "$bin" "${flags[@]}" "${kept[@]}" >"$log" 2>&1; then
      tail -n 40 "$log"
      echo "$t: a kept regression input FAILS again (see above)" >"$work/$t.line"
      return 1
    fi
  fi

  echo "== fuzz $t: ${seconds}s from $seeds"
  mkdir -p "$work/new-$t"
  "$bin" "${flags[@]}" -max_total_time="$seconds" "$work/new-$t" "$seeds" >"$log" 2>&1
  local rc=$? execs eps cov ft result=ok
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  eps="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
  cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)"
  ft="$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)"
  # libFuzzer exits non-zero on a crash, leak, timeout or OOM; the sanitizers' SUMMARY line
  # is checked too, so a report cannot pass by a zero exit.
  if [[ $rc -ne 0 ]] || grep -qE '^SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:' "$log"; then
    result="FAILED (exit $rc)"
    grep -E 'ERROR: |SUMMARY: |runtime error:|artifact_prefix|Test unit written to' "$log" | head -n 20
    tail -n 60 "$log"
  fi
  local line
  line="$(printf '%-13s %8s execs %7s exec/s  cov %5s  ft %6s  %s' "$t" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "$result")"
  echo "$line"
  echo "$line" >"$work/$t.line"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$seconds" "${execs:-}" "${eps:-}" "${cov:-}" "${ft:-}" "$result" >"$work/$t.tsv"
  [[ "$result" == ok ]]
}

echo "== fuzz: ${#targets[@]} target(s), ${seconds}s each, $parallel at a time"
for i in "${!targets[@]}"; do
  while (( $(jobs -rp | wc -l) >= parallel )); do wait -n || true; done
  t="${targets[$i]}"
  { fuzz_one "$t"; echo $? >"$work/$t.rc"; } >"$work/$t.out" 2>&1 &
done
wait
status=0
lines=()
for t in "${targets[@]}"; do
  cat "$work/$t.out"
  lines+=("$(cat "$work/$t.line" 2>/dev/null || echo "$t: no result (the run was killed?)")")
  [[ "$(cat "$work/$t.rc" 2>/dev/null)" == 0 ]] || status=1
  if [[ -f "$work/$t.tsv" ]]; then cat "$work/$t.tsv" >>"$tsv"; fi
done

echo
echo "== fuzz summary (${seconds}s per target; crashing inputs in $build/crashes/<target>/)"
for l in "${lines[@]}"; do echo "$l"; done
exit $status
