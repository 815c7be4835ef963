#!/usr/bin/env bash
# `make test`: everything CI runs, with a timing line per step (make's prerequisites deps, venv
# and native have run already).
#
#   lint; the C++ suite and fuzz targets; the Java suite and fuzz targets; a container engine and
#   the images; the Python suite (tests/: unit, end-to-end, cross-language, containers); then the
#   lab, once per runtime: `zt-lab run --milestone all` on local processes (its report,
#   reports/latest, is CI's conformance report) and `... --runtime docker --reports reports/docker`,
#   each with the chaos runs and the replica run (`--milestone all,chaos,kills,replicas`; the
#   replica run's lab is on PostgreSQL, which its scenario module asks for itself).
#
# What runs at once (issue 17; docs/ci.md has the measurements): the first phase runs three
# tracks side by side, each a chain of steps:
#
#   native-c    cpp, then fuzz            (the C++ suite, then the libFuzzer targets)
#   native-j    lint, java, fuzz-java     (ruff/mypy/clang-tidy, then the JVM suites)
#   images      engine, images            (mostly waiting on the engine and apt in the build)
#
# The C++ and Java suites spend much of their time waiting on the services they start, the image
# build on the engine; side by side they fill CI's two cores instead of taking turns. The Python
# suite and the labs then run one after the other, each alone on the machine: their tests and
# figures were written for two cores of their own. A track's steps write to their own log
# (build/test-results/logs/<step>.log); when a step ends, a line gives its seconds and result,
# and the log is printed: whole when it failed, its last lines otherwise. A failed step stops its
# track; the other tracks run to their end, then make test fails.
#
# Containers where it can: an engine that answers is used; else, as root, one is started
# (scripts/docker-engine.sh, which installs Debian's docker.io when missing) and stopped again
# at the end; the images are (re)built by scripts/build-images.sh (cached layers: seconds when
# nothing changed). Where it cannot (no engine and not root), the container tests skip and
# the docker lab runs are left out, and the last line says so. Under CI=true that is a failure.
#
# Every step is timed against its budget (the table below; docs/ci.md says where each figure
# comes from): a line when it starts and when it ends, and a table at the end, also when a step
# fails, with each step's wall seconds, the CPU seconds it used (user + system, its processes
# included: CPU/wall near 2 means it kept both cores busy, near 0 that it waited) and its budget.
# Steps that ran side by side overlap, so the rows add up to more than the total. A step over
# budget does not fail the run; the table marks it, so the budget is revised or the step made
# faster instead of the total silently creeping towards CI's limit. The table is also written to
# build/test-results/make-test-timings.tsv (step, seconds, budget), for .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS

# Budget per step in seconds, for a fresh 2-core machine that runs nothing else (docs/ci.md).
declare -A budget=(
  [lint]=400 [cpp]=600 [fuzz]=150 [java]=180 [fuzz-java]=150 [engine]=30 [images]=480
  [native-c]=700 [native-j]=600 [python]=600 [lab-processes]=780 [lab-containers]=1080
)
results=build/test-results
logs=$results/logs
timings=$results/make-test-timings.tsv
mkdir -p "$logs"
rm -f "$logs"/*.status "$logs/engine.started" "$logs/containers.why"

containers=""      # empty: available; else why not

# cpu_now: sets CPU_NOW to the user + system seconds of this shell's waited-for children (and
# theirs), from the `times` builtin, run in this shell: in a subshell (a $(...) too) it would
# count that subshell's children, none.
cpu_now() {
  local f="$logs/.times.$BASHPID" line m1 s1 m2 s2
  times >"$f"
  { read -r _; read -r line; } <"$f"
  rm -f "$f"
  CPU_NOW=0
  # "XmY.YYYs XmY.YYYs"
  if [[ "$line" =~ ^([0-9]+)m([0-9]+)[.,][0-9]+s\ ([0-9]+)m([0-9]+)[.,][0-9]+s ]]; then
    m1=${BASH_REMATCH[1]} s1=${BASH_REMATCH[2]} m2=${BASH_REMATCH[3]} s2=${BASH_REMATCH[4]}
    CPU_NOW=$(( 10#$m1 * 60 + 10#$s1 + 10#$m2 * 60 + 10#$s2 ))
  fi
}

# run_step KEY DESCRIPTION COMMAND...: runs COMMAND as step KEY in a subshell, its output
# to the terminal (foreground steps) or to $LOG when set (tracks); writes
# $logs/KEY.status ("rc wall cpu start") and returns COMMAND's exit code.
run_step() {
  local key="$1" desc="$2" start=$SECONDS rc=0 cpu0
  shift 2
  cpu_now; cpu0=$CPU_NOW
  echo "== [make test $(( SECONDS - t0 ))s] $key: $desc${LOG:+ (log: $LOG)}"
  if [[ -n "${LOG:-}" ]]; then
    ( "$@" ) >"$LOG" 2>&1 || rc=$?
  else
    ( "$@" ) || rc=$?
  fi
  cpu_now
  printf '%d %d %d %d\n' "$rc" $(( SECONDS - start )) $(( CPU_NOW - cpu0 )) $(( start - t0 )) >"$logs/$key.status"
  return "$rc"
}

# report_step KEY: the end line of a track's step and its log (whole on failure, else the tail).
report_step() {
  local key="$1" log="$logs/$1.log" rc wall cpu start
  [[ -f "$logs/$key.status" ]] || return 0
  read -r rc wall cpu start <"$logs/$key.status"
  if [[ "$rc" -eq 0 ]]; then
    echo "== [make test $(( SECONDS - t0 ))s] $key passed in ${wall}s (CPU ${cpu}s); the end of $log:"
    tail -n 15 "$log" | sed "s/^/  [$key] /"
  else
    echo "== [make test $(( SECONDS - t0 ))s] $key FAILED (exit $rc) after ${wall}s; $log:"
    sed "s/^/  [$key] /" "$log"
  fi
}

# The steps. Each is a function so a track (a background chain) and the foreground run the same.
do_lint() { make --no-print-directory lint; }
do_cpp() { make --no-print-directory test-cpp; }
do_fuzz() { make --no-print-directory fuzz; }
do_java() { make --no-print-directory test-java; }
# Jazzer on service-b's request reader, SPIFFE ID and policy parsers (docs/testing.md): 15 s of
# fuzzing per target in CI, two targets at a time (each pays a JVM and Maven start of about 35 s,
# so more seconds buy less here than in the C++ step); a finding fails the run and keeps its input.
do_fuzz_java() { make --no-print-directory fuzz-java FUZZ_SECONDS=15; }
do_engine() {
  if engine_answers; then
    echo "[make test] using the Docker engine that answers"
  elif [[ $(id -u) -ne 0 ]]; then
    echo "no Docker engine answers and this is not root" >"$logs/containers.why"
  elif scripts/docker-engine.sh start; then
    touch "$logs/engine.started"
  else
    echo "scripts/docker-engine.sh start failed (see its log)" >"$logs/containers.why"
  fi
}
do_images() { scripts/build-images.sh; }
engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

# track NAME KEY:DESC:FUNCTION...: the steps in order, each to its own log; stops at the first
# that fails. Runs in the background; its steps' .status files tell the parent how they went.
track() {
  local name="$1" spec key desc fn
  shift
  for spec in "$@"; do
    IFS=: read -r key desc fn <<<"$spec"
    LOG="$logs/$key.log" run_step "$key" "$desc [track $name]" "$fn" || return 1
    report_step "$key"
  done
}

finish() {
  local rc=$? i key
  trap - EXIT
  # A track still running (make test interrupted): stop it, by the PIDs this script started.
  for i in "${track_pids[@]}"; do kill "$i" 2>/dev/null || true; done
  if [[ -f "$logs/engine.started" ]]; then
    echo "== [make test $(( SECONDS - t0 ))s] stopping the container engine make test started"
    scripts/docker-engine.sh stop || true
  fi
  echo "== make test: seconds per step (wall; CPU = user + system of the step's processes)"
  mkdir -p "$(dirname "$timings")"
  : >"$timings"
  printf '%-16s %8s %8s %8s %8s\n' step start seconds cpu budget
  for key in "${order[@]}"; do
    [[ -f "$logs/$key.status" ]] || continue
    local s_rc s_wall s_cpu s_start mark=""
    read -r s_rc s_wall s_cpu s_start <"$logs/$key.status"
    local b="${budget[$key]:-0}"
    (( s_wall > b )) && mark="  OVER BUDGET"
    [[ "$s_rc" -ne 0 ]] && mark="$mark  FAILED"
    printf '%-16s %8d %8d %8d %8d%s\n' "$key" "$s_start" "$s_wall" "$s_cpu" "$b" "$mark"
    printf '%s\t%d\t%d\n' "$key" "$s_wall" "$b" >>"$timings"
  done
  printf '%-16s %8s %8d\n' total "" $(( SECONDS - t0 ))
  if [[ $rc -ne 0 ]]; then
    echo "== make test FAILED after $(( SECONDS - t0 ))s (exit $rc)"
  elif [[ -n "$containers" ]]; then
    echo "== make test passed in $(( SECONDS - t0 ))s WITHOUT CONTAINERS: $containers; tests/containers skipped and no docker lab run (run make test as root, or with a Docker engine running)"
  else
    echo "== make test passed in $(( SECONDS - t0 ))s (containers included)"
  fi
  exit "$rc"
}
order=(native-c cpp fuzz native-j lint java fuzz-java engine images python lab-processes
       lab-containers)
track_pids=()
trap finish EXIT

# Phase 1: three tracks side by side. A track's own row (native-c, native-j) is its wall time.
track_c() {
  local start=$SECONDS rc=0
  track native-c \
    "cpp:C++ suite (ASan+UBSan, 2 shards; the Release suite runs in make bench):do_cpp" \
    "fuzz:C++ fuzz targets (libFuzzer, ASan+UBSan, 30 s each, 2 at a time):do_fuzz" || rc=$?
  printf '%d %d 0 %d\n' "$rc" $(( SECONDS - start )) $(( start - t0 )) >"$logs/native-c.status"
  return "$rc"
}
track_j() {
  local start=$SECONDS rc=0
  track native-j \
    "lint:ruff, mypy, import-linter, shellcheck, clang-tidy:do_lint" \
    "java:Java suite (JUnit, 2 forks):do_java" \
    "fuzz-java:Java fuzz targets (Jazzer, 15 s each):do_fuzz_java" || rc=$?
  printf '%d %d 0 %d\n' "$rc" $(( SECONDS - start )) $(( start - t0 )) >"$logs/native-j.status"
  return "$rc"
}
track_images() {
  LOG="$logs/engine.log" run_step engine "container engine [track images]" do_engine || return 1
  report_step engine
  if [[ -f "$logs/containers.why" ]]; then return 0; fi
  LOG="$logs/images.log" run_step images "scripts/build-images.sh [track images]" do_images || return 1
  report_step images
}
echo "== [make test 0s] phase 1: tracks native-c (cpp, fuzz), native-j (lint, java, fuzz-java) and images (engine, images) side by side; logs in $logs/"
track_c & track_pids+=($!)
track_j & track_pids+=($!)
track_images & track_pids+=($!)
failed=()
track_names=(native-c native-j images)
for i in 0 1 2; do
  wait "${track_pids[$i]}" || failed+=("${track_names[$i]}")
done
track_pids=()
# A failed step's report: the track stopped at it, so it is printed here.
for key in cpp fuzz lint java fuzz-java engine images; do
  if [[ -f "$logs/$key.status" ]] && read -r s_rc _ <"$logs/$key.status" && [[ "$s_rc" -ne 0 ]]; then
    report_step "$key"
  fi
done
[[ -f "$logs/containers.why" ]] && containers="$(cat "$logs/containers.why")"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "== [make test $(( SECONDS - t0 ))s] phase 1 FAILED in track(s): ${failed[*]}" >&2
  exit 1
fi
if [[ -n "$containers" && "${CI:-}" == "true" ]]; then
  echo "[make test] CI=true: containers are required: $containers" >&2
  exit 1
fi

# Phase 2, one step at a time, output straight to the terminal.
run_step python "Python suite (tests/, pytest-xdist: 2 workers)" make --no-print-directory test-python
# Two labs at once (zt-lab run --parallel 2: one scenario module per worker, each on its own lab):
# about 40% less wall time on 2 cores. Its reports say "run kind: parallel": their timings shared
# the machine; the comparable figures come from `make demo` (one lab at a time) and `make bench`.
# The chaos runs (docs/chaos.md; not part of `all`) join the same run: their minutes, mostly
# fault windows waited out, overlap the milestones' labs instead of following them; so do
# `kills` (chaos plan 6: SIGKILL of the RA and of an agent mid-write) and `replicas` (two RA
# replicas on a PostgreSQL server of the run's own, one killed under load: its scenario module
# asks for the PostgreSQL store itself, so it shares the run with the SQLite labs; docs/ci.md).
run_step lab-processes "zt-lab run --milestone all,chaos,kills,replicas --parallel 2 (processes; CI's conformance report: reports/latest)" \
  .venv/bin/zt-lab run --milestone all,chaos,kills,replicas --parallel "${ZT_LAB_PARALLEL:-2}"
if [[ -z "$containers" ]]; then
  run_step lab-containers "zt-lab run --milestone all,chaos,kills,replicas --runtime docker --parallel 2 --reports reports/docker" \
    .venv/bin/zt-lab run --milestone all,chaos,kills,replicas --runtime docker --parallel "${ZT_LAB_PARALLEL:-2}" \
    --reports reports/docker
fi
