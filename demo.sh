#!/usr/bin/env bash
# The seed's exit check, shown end to end: service-a's certificate gets it into service-b over
# mutual TLS.
#
#   ./demo.sh mvp             local processes (the lab's process runtime) on 127.0.0.1
#   ./demo.sh mvp --compose   every component in its own container (compose.yaml)
#   ./demo.sh revoke          revocation (local processes): revoke service-a's certificate, then
#                             its next call to service-b fails with the reason, a valid call works
#   ./demo.sh observe         logs and metrics (Milestone 4): runs `zt-lab run --milestone 4`
#                             (the lab with a real Prometheus), then shows a readable tail of each
#                             component's events and the PromQL answers from the run's report
#   ./demo.sh observe --keep  the same lab, kept up: some traffic (requests, a refused handshake,
#                             a rotation), the events, live PromQL answers and the Prometheus UI's
#                             address, until Enter or Ctrl-C; then everything is torn down
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

usage() { echo "usage: $0 mvp [--compose] | $0 revoke | $0 observe [--keep]" >&2; exit 2; }
mode=process
case "${1:-}" in
  mvp)
    case "${2:-}" in
      "") ;;
      --compose) mode=compose ;;
      *) usage ;;
    esac
    ;;
  revoke) [[ -z "${2:-}" ]] || usage; mode=revoke ;;
  observe)
    case "${2:-}" in
      "") mode=observe ;;
      --keep) mode=observe-keep ;;
      *) usage ;;
    esac
    ;;
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

revoke_process() {
  [[ -x .venv/bin/python ]] || make --no-print-directory venv
  [[ -x build/service-a && -f build/service-b.jar ]] || make --no-print-directory native
  .venv/bin/python - <<'PY'
"""Process runtime: service-a's certificate works, `ztca revoke` it, the next call with it is
refused (the client's TLS alert and service-b's own log line say why), a valid identity still
gets in. The lab is stopped whatever happens."""
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zt.lab.metrics_scrape import scrape, value
from zt.lab.pins import curl_pin
from zt.lab.process_runtime import ProcessRuntime
from zt.lab.topology import Topology


def say(msg):
    print(f"[demo] {msg}", flush=True)


def curl_b(lab, identity):
    """curl service-b's /hello with one resolved generation of `identity`; (exit code, output)."""
    g = identity.generation()
    argv = ["curl", "-sS", "--max-time", "10", "-k", "--pinnedpubkey", curl_pin(lab.agent_identity("service-b").cert),
            "--cert", str(g / "chain.pem"), "--key", str(g / "key.pem"), lab.service_url("service-b") + "/hello"]
    say(f"$ curl -k --pinnedpubkey sha256//... --cert <{identity.name}>/chain.pem --key <{identity.name}>/key.pem "
        f"{lab.service_url('service-b')}/hello")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    out = (r.stdout.strip() or r.stderr.strip())
    print(out, flush=True)
    return r.returncode, out


def caller_is(out, spiffe_id):
    try:
        return json.loads(out).get("caller") == spiffe_id
    except ValueError:
        return False


work = Path(tempfile.mkdtemp(prefix="zt-demo-"))
topology = Topology()
lab = None
ok = False
try:
    lab = ProcessRuntime().start(topology, work)
    a = lab.agent_identity("service-a")
    operator = lab.client_identity("operator")
    say("1. service-a's certificate gets it into service-b:")
    code, out = curl_b(lab, a)
    before = code == 0 and caller_is(out, topology.spiffe_id("service-a"))
    serial = a.serial
    say(f"2. revoke it: $ ztca revoke {serial} --dir {lab.ca_dir}")
    doc = lab.revoke(serial=serial)
    say(f"   revoked {doc['revoked']}; CRL {doc['crl_number']} published")
    deadline = time.monotonic() + 15  # publisher -> agent -> service-b: normally well under a second
    while time.monotonic() < deadline and value(scrape(lab.metrics_url("service-b")), "mtls_crl_entries") < 1:
        time.sleep(0.1)
    say("3. the next call with service-a's certificate:")
    code, out = curl_b(lab, a)
    refused = code != 0 and "revoked" in out
    time.sleep(0.5)  # service-b logs after it sent its alert
    log = (work / "logs" / "service-b.log").read_text(errors="replace").splitlines()
    why = [line for line in log if '"handshake_rejected"' in line and serial in line.lower()]
    say("   service-b's log says why: " + (why[-1] if why else "(no handshake_rejected line)"))
    target = lab.service_url("service-b", from_service=True) + "/hello"
    say(f"   and service-a's own /call to service-b ($ curl --cert <operator>/... '{lab.service_url('service-a')}"
        f"/call?target={target}'):")
    g = operator.generation()
    r = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-k", "--pinnedpubkey", curl_pin(a.cert), "--cert", str(g / "chain.pem"),
         "--key", str(g / "key.pem"), "-G", "--data-urlencode", f"target={target}", lab.service_url("service-a") + "/call"],
        capture_output=True, text=True, timeout=30,
    )
    print(r.stdout.strip() or r.stderr.strip(), flush=True)
    call_refused = '"status":200' not in r.stdout.replace(" ", "") and "revoked" in r.stdout
    say("4. a valid identity (spiffe://zt.lab/svc/operator) still gets in:")
    code, out = curl_b(lab, operator)
    valid = code == 0 and caller_is(out, topology.spiffe_id("operator"))
    ok = before and refused and bool(why) and call_refused and valid
finally:
    if lab is not None:
        lab.stop()
    shutil.rmtree(work, ignore_errors=True)
say("revoked certificate refused, valid one served: " + ("OK" if ok else "FAILED"))
sys.exit(0 if ok else 1)
PY
}

observe_ready() {
  make --no-print-directory venv  # cheap when .venv is current; Milestone 4 needs jsonschema
  [[ -x build/service-a && -f build/service-b.jar ]] || make --no-print-directory native
  command -v prometheus >/dev/null || ./scripts/install-deps.sh
}

observe_run() {
  observe_ready
  local rc=0
  .venv/bin/zt-lab run --milestone 4 || rc=$?
  local logs=reports/latest/logs/test_m4_observability
  echo
  say "what the components said, a few events each ($logs/):"
  .venv/bin/python -m zt.lab.event_tail "$logs" -n 4 || true
  echo
  say "what Prometheus answered at the end of the scenario (reports/latest/summary.json):"
  .venv/bin/python - <<'PY' || true
import json

doc = json.load(open("reports/latest/summary.json"))
for t in doc.get("figures", {}).get("tables", []):
    if t["title"].startswith("PromQL answers"):
        for query, series, value in t["rows"]:
            print(f"  {query:<48} {series:<40} {value:g}")
PY
  say "plots (handshakes per second, seconds until expiry) and verdicts: reports/latest/report.html"
  say "the Prometheus UI, live: ./demo.sh observe --keep"
  return "$rc"
}

observe_keep() {
  observe_ready
  # The script as an argument, not on stdin: input() below waits on the caller's stdin (a
  # terminal: Enter; a pipe: its first line), which a heredoc on stdin would have used up.
  local script
  script="$(cat <<'PY'
"""Milestone 4's lab on local processes, kept up for a person: some traffic, the events, live
PromQL answers and the Prometheus UI, until Enter or Ctrl-C; then it is torn down."""
import shutil
import sys
import tempfile
import time
from pathlib import Path

from scenarios.test_m4_observability import LAB_TOPOLOGY
from zt.lab import event_tail, mtls_client
from zt.lab.process_runtime import ProcessRuntime
from zt.lab.prometheus import FIRST_QUESTIONS, Prometheus, answers


def say(msg):
    print(f"[demo] {msg}", flush=True)


work = Path(tempfile.mkdtemp(prefix="zt-observe-"))
lab = None
try:
    lab = ProcessRuntime().start(LAB_TOPOLOGY, work)
    prom = Prometheus(lab.prometheus_url())
    client = lab.client_identity("demo-client")
    say("traffic: 5 requests per service, one without a certificate (refused), a rotation of service-a")
    for s in ("service-a", "service-b"):
        for _ in range(5):
            mtls_client.get(lab.service_url(s) + "/hello", bundle=lab.bundle(), identity=client)
        mtls_client.get(lab.service_url(s) + "/hello", bundle=lab.bundle(), identity=None)
    lab.rotate("service-a")
    time.sleep(3)  # the rotation, and two scrapes
    prom.wait_scraped_after(time.time())
    for log in sorted(lab.logs.glob("*.log")):
        lines = event_tail.tail(log, 3) if log.stem != "prometheus" else []
        if lines:
            print(f"--- {log.stem}")
            print("\n".join(lines))
    say("PromQL answers, live:")
    for q, series, value in answers(prom, FIRST_QUESTIONS):
        print(f"  {q:<48} {series:<40} {value:g}")
    say(f"Prometheus UI: {lab.prometheus_url()}/graph  (try: rate(mtls_handshakes_total[1m]))")
    say(f"component logs: {lab.logs}/")
    say("the lab stays up; press Enter (or Ctrl-C) to tear it down")
    try:
        input()
    except EOFError:  # no terminal: nothing to wait for
        pass
    except KeyboardInterrupt:
        pass
finally:
    if lab is not None:
        lab.stop()
    shutil.rmtree(work, ignore_errors=True)
sys.exit(0)
PY
)"
  .venv/bin/python -c "$script"
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

case "$mode" in
  compose) mvp_compose ;;
  revoke) revoke_process ;;
  observe) observe_run ;;
  observe-keep) observe_keep ;;
  *) mvp_process ;;
esac
