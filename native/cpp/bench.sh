#!/usr/bin/env bash
# The CRL handshake benchmark: real loopback mTLS handshakes with no CRL, with our indexed
# 100k-entry CRL, and with stock OpenSSL X509_V_FLAG_CRL_CHECK on the same CRL; prints
# per-handshake mean/p50/p99 and the ratios. Builds first (build.sh). About a minute.
#   N=2000 native/cpp/bench.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
"$here/build.sh" >/dev/null

pki="$(mktemp -d "${TMPDIR:-/tmp}/zt-bench-pki-XXXXXX")"
trap 'rm -rf "$pki"' EXIT
echo "generating the test PKI with a 100k-entry CRL ..."
python3 "$repo/native/testpki/make_test_pki.py" all "$pki" --large-crl >/dev/null
"$repo/build/cpp/bench_crl_handshake" --pki "$pki" -n "${N:-2000}" --warmup "${WARMUP:-100}"
