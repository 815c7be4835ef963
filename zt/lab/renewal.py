"""Renewing a lab identity at the RA as the agent does, written from the outside.

The agent renews by signing an x5c proof with its current key over a CSR for a new key and
POSTing both to the RA's `/v1/renew` (zt/pki/renewal_proof.py, zt/agent/ra_client.py). The lab
speaks that API itself, with its own few lines of JOSE and X.509 (PyJWT, cryptography), instead of
importing the agent: the lab sees the system from outside only, so a defect shared by the
agent's client and the RA's check cannot hide itself. The proof, as the RA reads it:

    header  {"alg": "ES256", "typ": "zt-renew+jwt", "x5c": [leaf, intermediate]}   (RFC 7515 4.1.6)
    claims  {"aud": "zt-ra/v1/renew", "sub": <SPIFFE ID>, "iat", "exp" (<= 5 min), "jti",
             "csr_sha256": base64url(SHA-256(CSR DER))}

Two uses in Milestone 3:
- evidence that the RA refuses a renewal made with a revoked certificate, from the real RA over
  its real API;
- cheap fresh certificates: one renewal is one HTTP request, where a new registered identity
  costs a `ztca register` and an agent process. The revocation latency trials revoke one fresh
  certificate each, renewed from one client identity.

A renewal that succeeds is written as a certificate directory in the agent's layout (a `gen-*`
directory and the `current` symlink; key 0600), so the result is a `LabIdentity` like any other.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from zt.fsutil import write_secret
from zt.lab import mtls_client
from zt.lab.host_identities import LabError
from zt.lab.identity import LabIdentity

AUDIENCE = "zt-ra/v1/renew"
PROOF_TYPE = "zt-renew+jwt"
PROOF_LIFETIME = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class RenewalAnswer:
    """What the RA answered to one renewal: the new identity, or its status and error code."""

    presented_serial: str  # the certificate whose key signed the proof
    ok: bool
    status: int | None
    error: str | None  # the RA's JSON `error` code (e.g. revoked_certificate)
    reason: str
    elapsed_ms: float
    identity: LabIdentity | None = None
    retry_after: str | None = None  # the Retry-After header of a refusal (429: rate_limited)

    @property
    def new_serial(self) -> str | None:
        return self.identity.serial if self.identity is not None else None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def proof(identity: LabIdentity, csr_der: bytes, now: dt.datetime) -> str:
    """The x5c renewal proof for `csr_der`, signed with `identity`'s current key (ECDSA P-256,
    as the agent's default key type)."""
    gen = identity.generation()
    key = serialization.load_pem_private_key((gen / "key.pem").read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise LabError(f"{identity.name}: the lab signs renewal proofs with EC keys only, not {type(key).__name__}")
    chain = x509.load_pem_x509_certificates((gen / "chain.pem").read_bytes())
    claims = {
        "aud": AUDIENCE,
        "sub": identity.spiffe_id,
        "iat": int(now.timestamp()),
        "exp": int((now + PROOF_LIFETIME).timestamp()),
        "jti": secrets.token_urlsafe(18),
        "csr_sha256": _b64url(hashlib.sha256(csr_der).digest()),
    }
    alg = "ES384" if key.curve.key_size >= 384 else "ES256"
    x5c = [base64.b64encode(_der(c)).decode() for c in chain]
    return jwt.encode(claims, key, algorithm=alg, headers={"typ": PROOF_TYPE, "x5c": x5c})


def _write_identity(out: Path, key: ec.EllipticCurvePrivateKey, chain_pem: str, bundle: Path, spiffe_id: str) -> None:
    """The agent's layout (docs/contracts.md section 2), enough for the lab's clients."""
    chain = x509.load_pem_x509_certificates(chain_pem.encode())
    leaf = chain[0]
    serial = format(leaf.serial_number, "x")
    gen = out / f"gen-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}Z-{serial[:8]}"
    gen.mkdir(parents=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_secret(gen / "key.pem", key_pem)
    (gen / "cert.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (gen / "chain.pem").write_text(chain_pem)
    (gen / "bundle.pem").write_bytes(bundle.read_bytes())
    (gen / "svid.json").write_text(
        json.dumps({"spiffe_id": spiffe_id, "serial": serial, "not_after": leaf.not_valid_after_utc.isoformat()})
    )
    tmp = out / f".current-{secrets.token_hex(4)}"
    os.symlink(gen.name, tmp)
    os.replace(tmp, out / "current")


def renew(
    ra_url: str, bundle: Path, identity: LabIdentity, out: Path, *, ttl_seconds: int | None = None
) -> RenewalAnswer:
    """Ask the RA at `ra_url` (its certificate checked against `bundle` and the host name) to
    renew `identity`, as the agent would; on success the new key and certificate go to `out`."""
    presented = identity.serial
    key = ec.generate_private_key(ec.SECP256R1())  # a new key for every renewal, as the agent does
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.spiffe_id)]), critical=True)
        .sign(key, hashes.SHA256())
    )
    body: dict[str, object] = {
        "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
        "proof": proof(identity, csr.public_bytes(serialization.Encoding.DER), dt.datetime.now(dt.UTC)),
    }
    if ttl_seconds:
        body["ttl_seconds"] = ttl_seconds
    tls = mtls_client.context(bundle, None, check_hostname=True)
    t0 = time.perf_counter()
    try:
        r = httpx.post(ra_url.rstrip("/") + "/v1/renew", json=body, verify=tls, timeout=15, trust_env=False)
    except httpx.HTTPError as e:
        return RenewalAnswer(presented, False, None, "transport", f"{type(e).__name__}: {e}", 0.0)
    elapsed = (time.perf_counter() - t0) * 1000
    try:
        doc = r.json()
    except ValueError:
        doc = {"error": "non_json", "reason": r.text[:200]}
    if r.status_code != 200 or not isinstance(doc, dict) or "chain" not in doc:
        err = doc if isinstance(doc, dict) else {}
        return RenewalAnswer(
            presented,
            False,
            r.status_code,
            err.get("error"),
            str(err.get("reason", ""))[:300],
            elapsed,
            retry_after=r.headers.get("retry-after"),
        )
    _write_identity(out, key, str(doc["chain"]), bundle, identity.spiffe_id)
    return RenewalAnswer(presented, True, 200, None, "", elapsed, LabIdentity(identity.name, identity.spiffe_id, out))
