#!/usr/bin/env bash
# Fuzzes service-b's parsers with Jazzer (issue 19; docs/testing.md): each @FuzzTest target below
# for SECONDS (default 30), one JVM per target (Jazzer fuzzes one target per run), and prints the
# executions per second each reached. Exits non-zero on a finding: Jazzer has then written the
# input as crash-<sha1> into the target's src/test/resources/**/<Class>Inputs/<method>/ directory,
# where `mvn test` replays it from then on (fix the bug, keep the input, add a unit test).
# Jazzer's own growing corpus stays in native/java/.cifuzz-corpus/ (not committed).
# Logs: <repo>/build/test-results/java-fuzz/<target>.log; a summary TSV beside them.
#   native/java/fuzz.sh [SECONDS] [Class#method ...]
# Two targets run at once (FUZZ_PARALLEL, default 2; issue 17): Jazzer fuzzes on one thread, and a
# target's Maven and JVM start is most of its wall time, so two side by side keep CI's two cores
# busy; each keeps its own log and Surefire reports (target/fuzz-reports/<target>/), and the
# summary lists the targets in order.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$here" || exit
budget="${1:-30}"
parallel="${FUZZ_PARALLEL:-2}"
shift $(( $# > 0 ? 1 : 0 ))
if ! [[ "$budget" =~ ^[0-9]+$ && "$parallel" =~ ^[1-9][0-9]*$ ]] || (( budget < 1 )); then
    echo "usage: fuzz.sh [SECONDS] [Class#method ...]  (SECONDS a positive whole number)" >&2
    exit 2
fi
targets=("$@")
if (( ${#targets[@]} == 0 )); then
    targets=(
        "RequestReaderFuzz#read_any_bytes_as_requests_or_a_clean_rejection"
        "SpiffeIdFuzz#accept_exactly_the_valid_ids_and_round_trip_them"
        "PolicyFuzz#parse_any_file_or_fail_cleanly"
        "PolicyFuzz#decide_generated_policies_as_the_reference_model"
    )
fi
out="$repo/build/test-results/java-fuzz"
mkdir -p "$out"
summary="$out/summary.tsv"
printf 'target\tseconds\texecutions\texec_per_s\tresult\n' >"$summary"

if ! mvn -B -ntp -q -Dstyle.color=never test-compile >"$out/test-compile.log" 2>&1; then
    cat "$out/test-compile.log"
    exit 1
fi
# fuzz_one TARGET: one Jazzer run; writes its summary row to $out/<target>.row.
fuzz_one() {
    local t="$1" log="$out/${1//#/.}.log" t0=$SECONDS rc
    # jazzer.internal.arg.*: libFuzzer's argv (arg.0 is argv[0]); the later -max_total_time wins over
    # the annotation's. JUnit's own timeout is off so a long run is not cut by it.
    JAZZER_FUZZ=1 mvn -B -ntp -Dstyle.color=never surefire:test -Dtest="$t" -Dsurefire.failIfNoSpecifiedTests=false \
        -Dsurefire.reports="$here/target/fuzz-reports/${t//#/.}" \
        -Djazzer.internal.arg.0=fuzz.sh -Djazzer.internal.arg.1="-max_total_time=$budget" \
        >"$log" 2>&1
    rc=$?
    local took=$(( SECONDS - t0 ))
    # libFuzzer's closing line: "#<runs> DONE cov: .. exec/s: <n> ..."; a crash ends without one.
    local done_line last_line runs eps result=ok
    done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)"
    last_line="${done_line:-$(grep -E '^#[0-9]+[[:space:]].*exec/s:' "$log" | tail -1)}"
    runs="$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last_line")"
    eps="$(sed -nE 's/.*exec\/s: ([0-9]+).*/\1/p' <<<"$last_line")"
    if (( rc != 0 )) || [[ -z "$done_line" ]]; then
        result=FINDING
    fi
    printf '%s\t%d\t%s\t%s\t%s\n' "$t" "$took" "${runs:-0}" "${eps:-0}" "$result" >"$out/${t//#/.}.row"
}

rm -f "$out"/*.row
for t in "${targets[@]}"; do
    while (( $(jobs -rp | wc -l) >= parallel )); do wait -n || true; done
    fuzz_one "$t" &
done
wait
failed=0
for t in "${targets[@]}"; do
    log="$out/${t//#/.}.log"
    row="$out/${t//#/.}.row"
    if [[ ! -f "$row" ]]; then
        printf '%s\t0\t0\t0\tNO RESULT\n' "$t" >"$row"
    fi
    IFS=$'\t' read -r _ took runs eps result <"$row"
    cat "$row" >>"$summary"
    printf 'fuzz-java %-70s %8s exec/s %10s execs  %s (%ss)\n' "$t" "$eps" "$runs" "$result" "$took"
    if [[ "$result" != ok ]]; then
        failed=1
        grep -E 'Test unit written to|FuzzTestFindingException|Caused by' "$log" | head -5 | sed 's/^/    /'
        echo "    full log: $log"
    fi
done
exit $failed
