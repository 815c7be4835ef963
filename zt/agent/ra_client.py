"""The agent's client for the RA: HTTPS trusted only through the pinned trust bundle.

The bundle file is the agent's one root of trust (optionally pinned by its SHA-256, as
`bundle.pem.sha256` from `ztca init` gives it), never the system CA store: the context comes
from `zt.agent.trust.tls_context` and httpx is handed that context as is (`verify=ctx`), with
`trust_env=False` so no environment variable (SSL_CERT_FILE, proxies, netrc) changes whom we
talk to or what we send. A server whose certificate does not chain to the bundle fails the
handshake, before any request (and so before the bootstrap token) is sent.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

import httpx
from cryptography import x509

from zt.agent.trust import tls_context
from zt.errors import ConfigError, RemoteError

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def _is_untrusted(exc: BaseException) -> bool:
    """True when the failure is the RA's certificate not verifying against our bundle."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class RaClient:
    def __init__(self, base_url: str, roots: Sequence[x509.Certificate]) -> None:
        if not base_url.startswith("https://"):
            raise ConfigError(f"RA URL must be https://, got {base_url!r}")
        self.tls = tls_context(roots)
        self._http = httpx.Client(base_url=base_url.rstrip("/"), verify=self.tls, timeout=TIMEOUT, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            r = self._http.post(path, json=body, headers=headers)
        except httpx.HTTPError as e:
            raise RemoteError(f"RA {path}: {type(e).__name__}: {e}", permanent=_is_untrusted(e)) from e
        try:
            doc = r.json()
        except ValueError as e:
            raise RemoteError(f"RA {path}: HTTP {r.status_code} with a non-JSON body", status=r.status_code) from e
        if r.status_code != 200:
            raise RemoteError(
                f"RA {path}: HTTP {r.status_code} {doc.get('error')}: {doc.get('reason')}",
                status=r.status_code,
                code=doc.get("error"),
            )
        return dict(doc)

    def issue(self, token: str, csr_pem: str, ttl_seconds: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"csr": csr_pem}
        if ttl_seconds:
            body["ttl_seconds"] = ttl_seconds
        return self._post("/v1/issue", body, token)

    def renew(self, proof: str, csr_pem: str, ttl_seconds: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"csr": csr_pem, "proof": proof}
        if ttl_seconds:
            body["ttl_seconds"] = ttl_seconds
        return self._post("/v1/renew", body)
