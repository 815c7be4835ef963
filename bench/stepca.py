"""step-ca v0.30.2 on loopback, configured by us, as the baseline for zt-ra's issuance rate.

Everything step-ca needs is made here with `cryptography`, so the comparison does not depend on
the `step` CLI: a P-256 root and intermediate (the same shape as `ztca init` makes), a JWK
provisioner whose key signs the one-time tokens (ES256 JWTs, RFC 7519; `kid` is the key's
RFC 7638 thumbprint, as `step` sets it), and a `ca.json` with step-ca's default database
(badgerv2). Leaves get the lifetime zt-ra gives (`defaultTLSCertDuration`) and the same
backdating of notBefore (zt.ca.authority.BACKDATE), so both servers issue the same validity.

The binary is built from the Go module proxy with CGO off (its cgo build wants a smart-card
library): `CGO_ENABLED=0 GOBIN=.tools/bin go install .../step-ca@v0.30.2` (`ensure_binary`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import secrets
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from zt.ca.authority import BACKDATE
from zt.lab import process

STEP_CA_MODULE = "github.com/smallstep/certificates/cmd/step-ca"
STEP_CA_VERSION = "v0.30.2"
PROVISIONER = "bench"


def ensure_binary(tools: Path) -> Path:
    """`tools/bin/step-ca`, built once from the Go module proxy at the pinned version."""
    binary = tools / "bin" / "step-ca"
    stamp = tools / "bin" / "step-ca.version"
    if binary.exists() and stamp.exists() and stamp.read_text().strip() == STEP_CA_VERSION:
        return binary
    env = {**os.environ, "CGO_ENABLED": "0", "GOBIN": str(tools / "bin")}
    print(f"building step-ca {STEP_CA_VERSION} into {binary} (a few minutes, once) ...", flush=True)
    subprocess.run(["go", "install", f"{STEP_CA_MODULE}@{STEP_CA_VERSION}"], env=env, check=True)
    stamp.write_text(STEP_CA_VERSION + "\n")
    return binary


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca_cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey] | None, path_len: int
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def _jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    nums = key.public_key().public_numbers()
    pub = {"crv": "P-256", "kty": "EC", "x": _b64(nums.x.to_bytes(32, "big")), "y": _b64(nums.y.to_bytes(32, "big"))}
    thumb = json.dumps(pub, sort_keys=True, separators=(",", ":")).encode()  # RFC 7638 member order
    return {**pub, "use": "sig", "alg": "ES256", "kid": _b64(hashlib.sha256(thumb).digest())}


@dataclass
class StepCa:
    """One configured step-ca directory; `start()` runs it, `tokens()` makes one-time tokens."""

    dir: Path
    port: int
    root: Path
    provisioner_key: ec.EllipticCurvePrivateKey
    kid: str

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def token(self, san: str, now: float) -> str:
        """A JWK provisioner one-time token for `san` (its `sub` and only `sans` entry)."""
        header = {"alg": "ES256", "kid": self.kid, "typ": "JWT"}
        claims = {
            "iss": PROVISIONER,
            "aud": f"{self.url}/1.0/sign",
            "sub": san,
            "sans": [san],
            "iat": int(now),
            "nbf": int(now) - 60,
            "exp": int(now) + 3600,
            "jti": secrets.token_hex(16),
        }
        signing_input = (
            _b64(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(claims, separators=(",", ":")).encode())
        )
        der = self.provisioner_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + "." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def start(self, binary: Path, log: Path) -> process.Proc:
        ctx = ssl.create_default_context(cafile=str(self.root))

        def ready() -> bool:
            with urllib.request.urlopen(self.url + "/health", context=ctx, timeout=5) as r:
                return bool(r.status == 200)

        return process.start_ready(
            "step-ca", [str(binary), str(self.dir / "config" / "ca.json")], log, "step-ca /health", ready, timeout=60
        )


def configure(d: Path, port: int, leaf_ttl: dt.timedelta) -> StepCa:
    """Root, intermediate, provisioner and ca.json under `d` (files 0600, keys unencrypted)."""
    certs, secrets_dir, config = d / "certs", d / "secrets", d / "config"
    for sub in (certs, secrets_dir, config, d / "db"):
        sub.mkdir(parents=True, exist_ok=True)
    root_key = ec.generate_private_key(ec.SECP256R1())
    int_key = ec.generate_private_key(ec.SECP256R1())
    root = _ca_cert("bench step-ca root", root_key, None, 1)
    inter = _ca_cert("bench step-ca intermediate", int_key, ("bench step-ca root", root_key), 0)
    files = {
        certs / "root_ca.crt": root.public_bytes(serialization.Encoding.PEM),
        certs / "intermediate_ca.crt": inter.public_bytes(serialization.Encoding.PEM),
        secrets_dir / "intermediate_ca_key": int_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }
    for path, data in files.items():
        path.write_bytes(data)
        path.chmod(0o600)
    prov_key = ec.generate_private_key(ec.SECP256R1())
    jwk = _jwk(prov_key)
    ttl = f"{int(leaf_ttl.total_seconds())}s"
    ca_json = {
        "root": str(certs / "root_ca.crt"),
        "crt": str(certs / "intermediate_ca.crt"),
        "key": str(secrets_dir / "intermediate_ca_key"),
        "address": f"127.0.0.1:{port}",
        "dnsNames": ["127.0.0.1"],
        "logger": {"format": "json"},
        "db": {"type": "badgerv2", "dataSource": str(d / "db")},
        "authority": {
            "backdate": f"{int(BACKDATE.total_seconds())}s",
            "provisioners": [
                {
                    "type": "JWK",
                    "name": PROVISIONER,
                    "key": jwk,
                    "claims": {
                        "minTLSCertDuration": "30s",
                        "defaultTLSCertDuration": ttl,
                        "maxTLSCertDuration": ttl,
                    },
                }
            ],
        },
        "tls": {"minVersion": 1.2, "maxVersion": 1.3, "renegotiation": False},
    }
    path = config / "ca.json"
    path.write_text(json.dumps(ca_json, indent=2))
    path.chmod(0o600)
    return StepCa(d, port, certs / "root_ca.crt", prov_key, jwk["kid"])
