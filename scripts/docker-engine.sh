#!/usr/bin/env bash
# A Docker engine for the container runtime, where none runs yet.
#
#   scripts/docker-engine.sh start    use the engine that answers, or install Debian's docker.io
#                                     and docker-compose (as root) and start dockerd in the background
#   scripts/docker-engine.sh status   does an engine answer; did this script start it
#   scripts/docker-engine.sh stop     stop the dockerd this script started (by its PID), nothing else
#
# Why a script and not systemd: lab machines and CI sandboxes here have no init system, so
# dockerd is started as a plain background process. What it needs (docs/containers.md): root,
# a kernel with namespaces, cgroups (v1 or v2), veth and bridge, nf_tables/iptables for the
# bridge's NAT, and overlayfs for the overlay2 storage driver (else it falls back to vfs).
#
# State (pid file, log) lives in ZT_DOCKERD_STATE (default /var/run/zt-dockerd). Images and
# volumes stay in Docker's data root (/var/lib/docker), so they survive a stop/start.
set -euo pipefail

state="${ZT_DOCKERD_STATE:-/var/run/zt-dockerd}"
pid_file="$state/dockerd.pid"
log_file="$state/dockerd.log"
driver_pref="${ZT_DOCKER_STORAGE_DRIVER:-}"    # empty: overlay2, then vfs
wait_seconds="${ZT_DOCKERD_WAIT:-60}"

say() { echo "[docker-engine] $*"; }

engine_answers() { timeout 10 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

our_pid() {
  # The PID we recorded, only while it is still that dockerd (a reused PID is not ours).
  [[ -f "$pid_file" ]] || return 1
  local pid
  pid="$(cat "$pid_file")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "dockerd" ]] || return 1
  echo "$pid"
}

install_engine() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -ne 0 ]]; then
    say "no engine answers and ${missing[*]} missing; as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  say "installing ${missing[*]} (Debian packages)"
  # Keep the package's maintainer scripts from starting a dockerd of their own through
  # invoke-rc.d: this script starts (and later stops) exactly one, by PID.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  local rc=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
  [[ $made_policy -eq 1 ]] && rm -f "$policy"
  [[ $rc -eq 0 ]] || { say "apt-get failed ($rc)" >&2; exit "$rc"; }
}

launch() {
  # Start dockerd with one storage driver and wait until `docker info` answers.
  local driver="$1" pid
  mkdir -p "$state"
  say "starting dockerd (storage driver $driver; log $log_file)"
  # setsid: its own session, so it outlives this shell and a Ctrl-C here does not reach it.
  setsid dockerd --storage-driver "$driver" --pidfile "$state/dockerd.self.pid" \
    >>"$log_file" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$pid_file"
  local t0=$SECONDS
  while (( SECONDS - t0 < wait_seconds )); do
    if engine_answers; then
      say "engine up in $(( SECONDS - t0 ))s: $(docker info --format 'server {{.ServerVersion}}, storage {{.Driver}}, cgroup v{{.CgroupVersion}}')"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      say "dockerd exited; log tail:" >&2
      tail -n 15 "$log_file" >&2 || true
      rm -f "$pid_file"
      return 1
    fi
    sleep 0.5
  done
  say "dockerd did not answer within ${wait_seconds}s; log tail:" >&2
  tail -n 15 "$log_file" >&2 || true
  stop_ours
  return 1
}

stop_ours() {
  local pid
  if ! pid="$(our_pid)"; then
    rm -f "$pid_file"
    say "no dockerd started by this script is running"
    return 0
  fi
  say "stopping dockerd (pid $pid)"
  kill -TERM "$pid"
  local t0=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS - t0 > 30 )); then
      say "dockerd still running after 30s; SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$pid_file"
  say "stopped"
}

cmd_start() {
  if engine_answers; then
    say "an engine answers: $(docker info --format 'server {{.ServerVersion}}, storage {{.Driver}}')"
    return 0
  fi
  if our_pid >/dev/null; then
    say "our dockerd (pid $(our_pid)) runs but does not answer; restarting it"
    stop_ours
  fi
  if [[ $(id -u) -ne 0 ]]; then
    say "no engine answers; start one (or run this script as root)" >&2
    exit 1
  fi
  install_engine
  if [[ -n "$driver_pref" ]]; then
    launch "$driver_pref"
    return
  fi
  launch overlay2 && return 0
  say "overlay2 failed; trying vfs (works everywhere, uses more disk)"
  launch vfs
}

cmd_status() {
  if engine_answers; then
    say "engine answers: $(docker info --format 'server {{.ServerVersion}}, storage {{.Driver}}, root {{.DockerRootDir}}')"
  else
    say "no engine answers"
  fi
  if pid="$(our_pid)"; then say "started by this script: pid $pid (log $log_file)"; fi
  engine_answers
}

case "${1:-}" in
  start) cmd_start ;;
  stop) stop_ours ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
