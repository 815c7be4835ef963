#!/usr/bin/env bash
# `make test`: everything CI runs, in order, with a timing line per step (make's prerequisites
# deps, venv and native have run already).
#
#   lint; the C++ and Java suites; a container engine and the images; the Python suite
#   (tests/: unit, end-to-end, cross-language, containers); then the lab, once per runtime:
#   `zt-lab run --milestone all` on local processes (its report, reports/latest, is CI's
#   conformance report) and `zt-lab run --milestone all --runtime docker --reports reports/docker`.
#
# Containers where it can: an engine that answers is used; else, as root, one is started
# (scripts/docker-engine.sh, which installs Debian's docker.io when missing) and stopped again
# at the end; the images are (re)built by scripts/build-images.sh (cached layers: seconds when
# nothing changed). Where it cannot (no engine and not root), the container tests skip and
# the docker lab run is left out, and the last line says so. Under CI=true that is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
step() { echo "== [make test $(( SECONDS - t0 ))s] $*"; }
engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

containers=""      # empty: available; else why not
started_engine=0
finish() {
  local rc=$?
  if [[ $started_engine -eq 1 ]]; then
    step "stopping the container engine make test started"
    scripts/docker-engine.sh stop || true
  fi
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

step "lint"
make --no-print-directory lint
step "C++ suite"
make --no-print-directory test-cpp
step "Java suite"
make --no-print-directory test-java

step "container engine"
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
  step "images"
  scripts/build-images.sh
fi

step "Python suite (tests/)"
make --no-print-directory test-python
step "zt-lab run --milestone all (processes; CI's conformance report: reports/latest)"
.venv/bin/zt-lab run --milestone all
if [[ -z "$containers" ]]; then
  step "zt-lab run --milestone all --runtime docker --reports reports/docker"
  .venv/bin/zt-lab run --milestone all --runtime docker --reports reports/docker
fi
