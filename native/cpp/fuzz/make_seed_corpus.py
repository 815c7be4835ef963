#!/usr/bin/env python3
"""Writes the committed seed corpus of the C++ fuzz targets (corpus/<target>/), small and real.

Why generated rather than hand-made: the CRLs must be well-formed DER with the extensions the
loader branches on (CRL number, reason codes including removeFromCRL, issuingDistributionPoint,
delta CRL indicator, an unknown critical extension), and the requests, IDs and policies should
be the ones the contract (docs/contracts.md) and the lab actually use. The CRLs are made with
native/testpki/make_test_pki.py's CA code; the fuzz target re-signs them with its own CA, so
which key signed them here does not matter. Rerun only to change the seeds:

    python3 native/cpp/fuzz/make_seed_corpus.py
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "testpki"))

import make_test_pki as pki  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.x509.oid import ObjectIdentifier  # noqa: E402

HTTP = [
    b"GET /hello HTTP/1.1\r\nHost: service-a\r\n\r\n",
    b"GET /call?target=https%3A%2F%2Fservice-b%3A8081%2Fhello&x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\nGET /whoami HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET https://service-a:8080/hello?q=%41 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /hello HTTP/1.0\r\n\r\n",
    b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /hello HTTP/2.0\r\n\r\n",
]

IDS = [
    b"spiffe://zt.lab/svc/service-a",
    b"spiffe://zt.lab/svc/service-b",
    b"spiffe://zt.lab",
    b"spiffe://zt.lab/ops/admin",
    b"spiffe://other.lab/svc/foreign",
    b"spiffe://a-b_c.d/A-Z/0.9/_x",
    b"spiffe://zt.lab/svc/../x",
    b"spiffe://Zt.lab/svc/x",
    b"spiffe://user@zt.lab:443/svc/x?q#f",
    b"https://zt.lab/svc/not-spiffe",
]

POLICIES = [
    # docs/contracts.md section 4, version 2 (deploy/mesh-policy.json) and version 1.
    b"""{
  "version": 2,
  "rules": [
    {"caller": "spiffe://zt.lab/svc/service-a", "callee": "spiffe://zt.lab/svc/service-b",
     "methods": ["GET"], "paths": ["/hello", "/call"]},
    {"caller": "spiffe://zt.lab/svc/service-b", "callee": "spiffe://zt.lab/svc/service-a",
     "methods": ["GET"], "paths": ["/hello"]},
    {"caller": "spiffe://zt.lab/svc/load",      "callee": "spiffe://zt.lab/svc/*",
     "methods": ["GET"], "paths": ["/hello"]},
    {"caller": "spiffe://zt.lab/ops/*",         "callee": "*",
     "methods": ["*"], "paths": ["*"]}
  ]
}
""",
    b"""{"version": 1, "rules": [
  {"caller": "spiffe://zt.lab/svc/service-a", "allow": ["/hello", "/call"]},
  {"caller": "spiffe://zt.lab/ops/*",         "allow": ["*"]}
]}
""",
    b'{"version": 2, "rules": []}',
    b'{"version": 1, "rules": [{"caller": "spiffe://zt.lab/svc/x", "allow": []}]}',
    b'{"version": 2, "rules": [{"caller": "a", "callee": "b", "methods": ["get"], "paths": ["/"]}]}',
    b'{"version": 1, "rules": [{"caller": "a", "allow": ["/"], "callee": "b"}]}',
    b'{"version": 3, "rules": [], "extra": 1}',
]


def crls() -> dict[str, bytes]:
    """name -> CRL (PEM or DER) covering the loader's branches."""
    key = pki.new_key()
    ca = pki.make_ca("zt seed CA", key, None, "zt.lab")
    pair = (ca, key)
    now = pki.now()
    out = {
        "empty.pem": pki.make_crl(pair, [], number=1),
        "one.pem": pki.make_crl(pair, [0x1234], number=2),
        "stale.pem": pki.make_crl(pair, [5], stale=True, number=1),
    }
    out["two.pem"] = out["empty.pem"] + out["one.pem"]

    def der(*exts: tuple[x509.ExtensionType, bool], entries: list[x509.RevokedCertificate]) -> bytes:
        b = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.subject)
            .last_update(now - dt.timedelta(minutes=1))
            .next_update(now + dt.timedelta(days=1))
        )
        for ext, critical in exts:
            b = b.add_extension(ext, critical=critical)
        for e in entries:
            b = b.add_revoked_certificate(e)
        return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def entry(serial: int, reason: x509.ReasonFlags | None = None) -> x509.RevokedCertificate:
        b = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now)
        if reason is not None:
            b = b.add_extension(x509.CRLReason(reason), critical=False)
        return b.build()

    out["reasons.der"] = der(
        (x509.CRLNumber(7), False),
        entries=[
            entry(1, x509.ReasonFlags.key_compromise),
            entry(2, x509.ReasonFlags.remove_from_crl),
            entry(3),
            entry(2**100),
        ],
    )
    idp = x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier("http://crl.zt.lab/crl.pem")],
        relative_name=None,
        only_contains_user_certs=True,
        only_contains_ca_certs=False,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=False,
    )
    out["idp.der"] = der((idp, True), entries=[entry(9)])
    out["delta.der"] = der((x509.CRLNumber(8), False), (x509.DeltaCRLIndicator(7), True), entries=[entry(4)])
    unknown = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    out["unknown-critical.der"] = der((unknown, True), entries=[])
    return out


def write(target: str, items: list[bytes] | dict[str, bytes]) -> None:
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    named = items if isinstance(items, dict) else {hashlib.sha1(b).hexdigest()[:12]: b for b in items}
    for name, data in named.items():
        (d / name).write_bytes(data)


def main() -> int:
    write("http_request", [bytes([n]) + r for r in HTTP for n in (255, 6)])
    write("spiffe_id", IDS)
    write("policy", POLICIES)
    write("crl_index", crls())
    return 0


if __name__ == "__main__":
    sys.exit(main())
