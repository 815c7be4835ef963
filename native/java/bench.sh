#!/usr/bin/env bash
# The CRL handshake benchmark: N real loopback mTLS handshakes per mode (no CRL, our indexed
# 100k-entry CRL, the JDK's PKIXRevocationChecker with the same CRL); prints mean/p50/p99 and ratios.
# Then the cost of checking 1,000 open connections against that CRL on a reload (issue 18).
# Usage: bench.sh [N] [WARMUP]   (defaults 1000 and 300; about a minute on 2 cores)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
if [ ! -f target/service-b.jar ] || [ -n "$(find src pom.xml -newer target/service-b.jar -print -quit)" ]; then
    mvn -q -B -DskipTests package
fi
pki="$(mktemp -d -t zt-bench-XXXXXX)"
trap 'rm -rf "$pki"' EXIT
echo "generating the test PKI with a 100k-entry CRL in $pki ..."
py="${ZT_PYTHON:-python3}"
[ -z "${ZT_PYTHON:-}" ] && [ -x ../../.venv/bin/python ] && py=../../.venv/bin/python
"$py" ../testpki/make_test_pki.py all "$pki" --large-crl > /dev/null
java -cp target/service-b.jar zt.serviceb.bench.CrlHandshakeBench "$pki" "${1:-1000}" "${2:-300}"
# Issue 18: the check a CRL reload makes over 1,000 open connections, cold and warm.
java -cp target/service-b.jar zt.serviceb.bench.ConnectionCheckBench "$pki" 1000 200
