#!/usr/bin/env bash
# The seed's exit check, shown end to end: service-a's certificate gets it into service-b over
# mutual TLS.
#
#   ./demo.sh mvp             local processes (the lab's process runtime) on 127.0.0.1
#   ./demo.sh mvp --compose   every component in its own container (compose.yaml)
#
# Both bring the whole system up as a deployment does (CA init, RA, CRL publisher, an agent
# per service, the C++ service-a and the Java service-b), print what curl got back with
# service-a's certificate and key from the directory its agent wrote, and tear everything down
# again, also on failure or Ctrl-C. Exit 0 only when service-b answered and named service-a
# (spiffe://zt.lab/svc/service-a) as its caller.
#
# curl and SPIFFE: our leaves carry only a URI SAN, which curl's host-name check cannot match,
# so curl is told to accept exactly service-b's public key (-k --pinnedpubkey sha256//...,
# still enforced); service-b verifies curl's client certificate in full.
set -euo pipefail
repo="$(cd "$(dirname "$0")" && pwd)"
cd "$repo"

usage() { echo "usage: $0 mvp [--compose]" >&2; exit 2; }
[[ "${1:-}" == "mvp" ]] || usage
mode=process
case "${2:-}" in
  "") ;;
  --compose) mode=compose ;;
  *) usage ;;
esac
say() { echo "[demo] $*"; }

mvp_process() {
  [[ -x .venv/bin/python ]] || make --no-print-directory venv
  [[ -x build/service-a && -f build/service-b.jar ]] || make --no-print-directory native
  .venv/bin/python - <<'PY'
"""Process runtime: start the lab, curl service-b as service-a, stop the lab whatever happens."""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from zt.lab.pins import curl_pin
from zt.lab.process_runtime import ProcessRuntime
from zt.lab.topology import Topology

work = Path(tempfile.mkdtemp(prefix="zt-demo-"))
topology = Topology()
lab = None
ok = False
try:
    lab = ProcessRuntime().start(topology, work)
    a = lab.agent_identity("service-a").generation()  # the reader's contract: resolve `current` once
    pin = curl_pin(lab.agent_identity("service-b").cert)
    argv = ["curl", "-sS", "--max-time", "10", "-k", "--pinnedpubkey", pin, "--cert", str(a / "chain.pem"),
            "--key", str(a / "key.pem"), lab.service_url("service-b") + "/hello"]
    print("[demo] $ " + " ".join(argv), flush=True)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    print(r.stdout.strip() or r.stderr.strip(), flush=True)
    try:
        ok = r.returncode == 0 and json.loads(r.stdout).get("caller") == topology.spiffe_id("service-a")
    except ValueError:
        ok = False
finally:
    if lab is not None:
        lab.stop()
    shutil.rmtree(work, ignore_errors=True)
print("[demo] service-a -> service-b over mTLS: " + ("OK" if ok else "FAILED"), flush=True)
sys.exit(0 if ok else 1)
PY
}

compose_cmd() {
  if docker compose version >/dev/null 2>&1; then
    echo "docker compose"
  elif command -v docker-compose >/dev/null; then
    echo "docker-compose"
  else
    say "neither 'docker compose' nor docker-compose is installed (scripts/docker-engine.sh start installs it)" >&2
    exit 1
  fi
}

mvp_compose() {
  scripts/docker-engine.sh start
  local tag="${ZT_IMAGE_TAG:-dev}" missing=()
  for i in zt-ra zt-crl zt-agent zt-service-a zt-service-b; do
    docker image inspect "$i:$tag" >/dev/null 2>&1 || missing+=("$i")
  done
  [[ ${#missing[@]} -eq 0 ]] || scripts/build-images.sh "${missing[@]}"

  # Global, not local: the EXIT trap runs after this function has returned.
  read -r -a compose <<<"$(compose_cmd)"
  compose+=(-p "zt-demo-$$" -f "$repo/compose.yaml")
  # shellcheck disable=SC2317  # called by the trap
  down() {
    say "tearing down (${compose[*]} down -v)"
    "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  }
  trap down EXIT
  trap 'exit 130' INT TERM

  say "${compose[*]} up -d"
  local t0=$SECONDS
  "${compose[@]}" up -d
  local s id status
  for s in service-a service-b; do
    id="$("${compose[@]}" ps -q "$s")"
    while :; do
      status="$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null || echo gone)"
      [[ "$status" == healthy ]] && break
      if [[ "$status" == unhealthy || "$status" == gone ]] || (( SECONDS - t0 > 180 )); then
        say "$s is $status after $(( SECONDS - t0 ))s; its log:" >&2
        "${compose[@]}" logs --no-color --tail 30 "$s" >&2 || true
        exit 1
      fi
      sleep 1
    done
  done
  say "all healthy in $(( SECONDS - t0 ))s"

  # service-b's key pin, from the certificate its agent wrote (public data).
  local pin
  pin="sha256//$("${compose[@]}" exec -T service-b cat /var/lib/zt/certs/current/cert.pem |
    openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"
  # In service-a's container, with the key and chain of one resolved generation.
  # shellcheck disable=SC2016  # expanded by the container's shell, not here
  local cmd='g=$(readlink -f /var/lib/zt/certs/current) && exec curl -sS --max-time 10 -k --pinnedpubkey "$0" --cert "$g/chain.pem" --key "$g/key.pem" https://service-b:8081/hello'
  say "\$ ${compose[*]} exec service-a curl -k --pinnedpubkey $pin --cert <gen>/chain.pem --key <gen>/key.pem https://service-b:8081/hello"
  local out rc=0
  out="$("${compose[@]}" exec -T service-a sh -c "$cmd" "$pin" 2>&1)" || rc=$?
  echo "$out"
  if [[ $rc -eq 0 && "$out" == *'"caller":"spiffe://zt.lab/svc/service-a"'* ]]; then
    say "service-a -> service-b over mTLS (containers): OK"
  else
    say "service-a -> service-b over mTLS (containers): FAILED (curl exit $rc)" >&2
    exit 1
  fi
}

if [[ "$mode" == compose ]]; then mvp_compose; else mvp_process; fi
