"""The RA's /v1/issue spoken from a chosen source address, and its answers as evidence.

Milestone 5's brute-force criterion needs two sources the RA tells apart: one that sends a
burst of wrong bootstrap tokens and is locked out, and another whose correct token must still
work. Where those sources are depends on the runtime (RunningLab.ra_issue): on processes, two
loopback addresses (127.0.0.2 and 127.0.0.3, bound as the client's local address; Linux routes
all of 127.0.0.0/8 to lo); on containers, the host through the RA's published port, and a
container of the run on the `pki` network (the RA sees its own address for each).

The request is the agent's (zt/agent/ra_client.py): `POST /v1/issue` with
`Authorization: Bearer <token>` and a CSR whose only SAN is the SPIFFE ID. Written here from
the outside (a few lines of cryptography and httpx), as zt.lab.renewal does for /v1/renew.
The answer keeps what the criterion judges: status, the JSON error code and reason, and the
Retry-After header.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from zt.lab import mtls_client


@dataclass(frozen=True)
class RaAnswer:
    source: str  # which source sent it, as the runtime names it ("127.0.0.2", "host", ...)
    status: int | None  # None: no HTTP answer (transport error)
    error: str | None  # the RA's JSON `error` code, or the transport error class
    reason: str
    retry_after: str | None  # the Retry-After header, as sent
    retry_after_body: float | None  # the body's `retry_after`
    elapsed_ms: float

    def details(self) -> dict[str, Any]:
        return asdict(self)


def csr_pem(spiffe_id: str) -> str:
    """A CSR for a fresh P-256 key whose only SAN is `spiffe_id` (the key is thrown away: the
    criterion judges the RA's answer, not the certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def answer_from(source: str, status: int | None, headers: dict[str, str], text: str, elapsed_ms: float) -> RaAnswer:
    """An RaAnswer from an HTTP answer's parts (also what the in-container client prints)."""
    try:
        doc = json.loads(text) if text else {}
    except ValueError:
        doc = {"error": "non_json", "reason": text[:200]}
    doc = doc if isinstance(doc, dict) else {}
    retry = doc.get("retry_after")
    return RaAnswer(
        source=source,
        status=status,
        error=doc.get("error") if status != 200 else None,
        reason=str(doc.get("reason", ""))[:300],
        retry_after={k.lower(): v for k, v in headers.items()}.get("retry-after"),
        retry_after_body=float(retry) if isinstance(retry, int | float) else None,
        elapsed_ms=round(elapsed_ms, 2),
    )


def issue(
    ra_url: str, bundle: Path, token: str, spiffe_id: str, *, source: str, local_address: str | None = None
) -> RaAnswer:
    """One `POST /v1/issue` from `local_address` (None: the system's choice)."""
    tls = mtls_client.context(bundle, None, check_hostname=True)
    transport = httpx.HTTPTransport(verify=tls, local_address=local_address)
    t0 = time.perf_counter()
    try:
        with httpx.Client(transport=transport, timeout=15, trust_env=False) as c:
            r = c.post(
                ra_url.rstrip("/") + "/v1/issue",
                json={"csr": csr_pem(spiffe_id)},
                headers={"Authorization": f"Bearer {token}"},
            )
    except httpx.HTTPError as e:
        return RaAnswer(source, None, "transport", f"{type(e).__name__}: {e}"[:300], None, None, 0.0)
    return answer_from(source, r.status_code, dict(r.headers), r.text, (time.perf_counter() - t0) * 1000)


# The same request made inside a container of the run (zt.lab.container_runtime runs it with the
# image's Python, which has httpx): token, CSR, URL and bundle path come in the environment, the
# answer goes out as one JSON line on stdout.
IN_CONTAINER_CLIENT = """
import json, os, ssl, time, httpx
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(cafile=os.environ["ZT_BUNDLE"])
t0 = time.perf_counter()
try:
    r = httpx.post(os.environ["ZT_URL"] + "/v1/issue", json={"csr": os.environ["ZT_CSR"]},
                   headers={"Authorization": "Bearer " + os.environ["ZT_TOKEN"]}, verify=ctx, timeout=15,
                   trust_env=False)
    out = {"status": r.status_code, "headers": dict(r.headers), "text": r.text}
except httpx.HTTPError as e:
    out = {"status": None, "headers": {}, "text": json.dumps({"error": "transport", "reason": repr(e)})}
out["elapsed_ms"] = (time.perf_counter() - t0) * 1000
print(json.dumps(out))
"""
