#!/bin/sh
# zt-ca-init: the one-shot CA initialisation, run before the RA starts (compose's `ca-init`,
# the container runtime's first container). Safe to run again: it never replaces a CA.
#
#   1. `ztca init` into the CA volume, only if there is no CA yet (the keys are made here, in
#      the volume, never in an image);
#   2. publish the trust bundle (certificates only, no key) into the trust volume the agents
#      mount read-only;
#   3. register each workload in ZT_SERVICES whose token volume is mounted at
#      /var/lib/zt/tokens/<service>, writing a fresh one-time token there (0600). A rerun mints
#      new tokens; an agent that still holds a valid identity does not need one.
#
# Environment: ZT_TRUST_DOMAIN (zt.lab), ZT_CRL_URL (http://crl.zt.lab:8444/crl, the CRL
# distribution point put in every leaf: agents must reach it), ZT_CRL_VALIDITY (1h),
# ZT_SERVICES ("service-a service-b"), ZT_TOKEN_TTL (1h).
set -eu
ca=/var/lib/zt/ca
trust=/var/lib/zt/trust
tokens=/var/lib/zt/tokens
services="${ZT_SERVICES-service-a service-b}"

# One JSON line per step, in the log-line schema of every zt component (docs/logs.md).
log() {
  printf '{"ts":"%s","level":"info","component":"ca-init","event":"ca_init","step":"%s","detail":"%s"}\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$1" "$2" >&2
}

if [ -f "$ca/zt.db" ]; then
  log exists "$ca holds a CA; not touching its keys"
else
  ztca init --dir "$ca" --trust-domain "${ZT_TRUST_DOMAIN:-zt.lab}" \
    --crl-url "${ZT_CRL_URL:-http://crl.zt.lab:8444/crl}" --crl-validity "${ZT_CRL_VALIDITY:-1h}" >/dev/null
  log created "trust domain ${ZT_TRUST_DOMAIN:-zt.lab}, CRL at ${ZT_CRL_URL:-http://crl.zt.lab:8444/crl}"
fi

if [ -d "$trust" ] && [ -w "$trust" ]; then
  for f in bundle.pem bundle.pem.sha256; do
    cp "$ca/$f" "$trust/.$f.tmp" && chmod 0444 "$trust/.$f.tmp" && mv -f "$trust/.$f.tmp" "$trust/$f"
  done
  log trust "bundle published to $trust"
fi

for s in $services; do
  if [ -d "$tokens/$s" ] && [ -w "$tokens/$s" ]; then
    ztca register "$s" --dir "$ca" --ttl "${ZT_TOKEN_TTL:-1h}" --token-file "$tokens/$s/token" >/dev/null
    log registered "$s: token in $tokens/$s/token"
  else
    log skipped "$s: no writable token volume at $tokens/$s"
  fi
done
