#!/usr/bin/env bash
# `make test`: everything CI runs, in order, with a timing line per step (make's prerequisites
# deps, venv and native have run already).
#
#   lint; the C++ suite and fuzz targets; the Java suite; a container engine and the images;
#   the Python suite (tests/: unit, end-to-end, cross-language, containers); then the lab, once
#   per runtime:
#   `zt-lab run --milestone all` on local processes (its report, reports/latest, is CI's
#   conformance report) and `zt-lab run --milestone all --runtime docker --reports reports/docker`.
#
# Containers where it can: an engine that answers is used; else, as root, one is started
# (scripts/docker-engine.sh, which installs Debian's docker.io when missing) and stopped again
# at the end; the images are (re)built by scripts/build-images.sh (cached layers: seconds when
# nothing changed). Where it cannot (no engine and not root), the container tests skip and
# the docker lab run is left out, and the last line says so. Under CI=true that is a failure.
#
# Every step is timed against its budget (the table below; docs/ci.md says where each figure
# comes from): a line when it starts, and a table at the end, also when a step fails. A step
# over budget does not fail the run; the table marks it, so the budget is revised or the step
# made faster instead of the total silently creeping towards CI's limit. The table is also
# written to build/test-results/make-test-timings.tsv (step, seconds, budget), for .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS

# Budget per step in seconds, for a fresh 2-core machine that runs nothing else (docs/ci.md).
declare -A budget=(
  [lint]=300 [cpp]=480 [fuzz]=240 [java]=180 [fuzz-java]=240 [engine]=30 [images]=480 [python]=420
  [lab-processes]=480 [lab-containers]=720
)
timings=build/test-results/make-test-timings.tsv
steps=() took=() current="" current_t0=0
end_step() {
  [[ -n "$current" ]] || return 0
  steps+=("$current"); took+=($(( SECONDS - current_t0 ))); current=""
}
step() {  # step KEY description...
  end_step
  current="$1" current_t0=$SECONDS
  shift
  echo "== [make test $(( SECONDS - t0 ))s] $*"
}
timing_table() {
  mkdir -p "$(dirname "$timings")"
  : >"$timings"
  printf '%-16s %8s %8s\n' step seconds budget
  local i
  for i in "${!steps[@]}"; do
    local b="${budget[${steps[$i]}]:-0}" mark=""
    (( took[i] > b )) && mark="  OVER BUDGET"
    printf '%-16s %8d %8d%s\n' "${steps[$i]}" "${took[$i]}" "$b" "$mark"
    printf '%s\t%d\t%d\n' "${steps[$i]}" "${took[$i]}" "$b" >>"$timings"
  done
  printf '%-16s %8d\n' total $(( SECONDS - t0 ))
}
engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

containers=""      # empty: available; else why not
started_engine=0
finish() {
  local rc=$?
  end_step
  if [[ $started_engine -eq 1 ]]; then
    echo "== [make test $(( SECONDS - t0 ))s] stopping the container engine make test started"
    scripts/docker-engine.sh stop || true
  fi
  echo "== make test: seconds per step"
  timing_table
  if [[ $rc -ne 0 ]]; then
    echo "== make test FAILED after $(( SECONDS - t0 ))s (exit $rc)"
  elif [[ -n "$containers" ]]; then
    echo "== make test passed in $(( SECONDS - t0 ))s WITHOUT CONTAINERS: $containers; tests/containers skipped and no docker lab run (run make test as root, or with a Docker engine running)"
  else
    echo "== make test passed in $(( SECONDS - t0 ))s (containers included)"
  fi
  exit "$rc"
}
trap finish EXIT

step lint "lint"
make --no-print-directory lint
step cpp "C++ suite (ASan+UBSan; the Release suite runs in make bench)"
make --no-print-directory test-cpp
step fuzz "C++ fuzz targets (libFuzzer, ASan+UBSan, 30 s each; docs/testing.md)"
make --no-print-directory fuzz
step java "Java suite"
make --no-print-directory test-java
# Jazzer on service-b's request reader, SPIFFE ID and policy parsers (docs/testing.md): 15 s of
# fuzzing per target in CI (each target also pays a JVM and Maven start of about 35 s, so more
# seconds buy less here than in the C++ step); a finding fails the run and keeps its input.
step fuzz-java "Java fuzz targets (Jazzer, 15 s each)"
make --no-print-directory fuzz-java FUZZ_SECONDS=15

step engine "container engine"
if engine_answers; then
  echo "[make test] using the Docker engine that answers"
elif [[ $(id -u) -ne 0 ]]; then
  containers="no Docker engine answers and this is not root"
elif scripts/docker-engine.sh start; then
  started_engine=1
else
  containers="scripts/docker-engine.sh start failed (see above)"
fi
if [[ -n "$containers" && "${CI:-}" == "true" ]]; then
  echo "[make test] CI=true: containers are required: $containers" >&2
  exit 1
fi
if [[ -z "$containers" ]]; then
  step images "images"
  scripts/build-images.sh
fi

step python "Python suite (tests/, pytest-xdist: 2 workers)"
make --no-print-directory test-python
# Two labs at once (zt-lab run --parallel 2: one scenario module per worker, each on its own lab):
# about 40% less wall time on 2 cores. Its reports say "run kind: parallel": their timings shared
# the machine; the comparable figures come from `make demo` (one lab at a time) and `make bench`.
step lab-processes "zt-lab run --milestone all --parallel 2 (processes; CI's conformance report: reports/latest)"
.venv/bin/zt-lab run --milestone all --parallel "${ZT_LAB_PARALLEL:-2}"
if [[ -z "$containers" ]]; then
  step lab-containers "zt-lab run --milestone all --runtime docker --parallel 2 --reports reports/docker"
  .venv/bin/zt-lab run --milestone all --runtime docker --parallel "${ZT_LAB_PARALLEL:-2}" --reports reports/docker
fi
