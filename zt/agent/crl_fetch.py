"""Fetching the CRL for the services: conditional GET, verify, refuse rollbacks, hand over PEM.

The agent verifies the CRL's signature against the intermediate it holds before writing it,
and refuses a CRL whose number is lower than one it already wrote (a replayed old CRL would
un-revoke certificates). `If-None-Match` keeps an unchanged CRL to a 304.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zt.errors import RemoteError
from zt.pki.crls import crl_number

TIMEOUT = httpx.Timeout(5.0, connect=3.0)


@dataclass(frozen=True)
class FetchedCrl:
    pem: bytes
    number: int
    next_update: str
    entries: int


class CrlFetcher:
    def __init__(self, url: str) -> None:
        self.url = url
        self._etag: str | None = None
        self._number = -1
        self._http = httpx.Client(timeout=TIMEOUT)

    def close(self) -> None:
        self._http.close()

    def fetch(self, issuers: tuple[x509.Certificate, ...]) -> FetchedCrl | None:
        """The new CRL, or None when it has not changed since the last fetch."""
        headers = {"If-None-Match": self._etag} if self._etag else {}
        try:
            r = self._http.get(self.url, headers=headers)
        except httpx.HTTPError as e:
            raise RemoteError(f"CRL {self.url}: {type(e).__name__}: {e}") from e
        if r.status_code == 304:
            return None
        if r.status_code != 200:
            raise RemoteError(f"CRL {self.url}: HTTP {r.status_code}", status=r.status_code)
        try:
            crl = (x509.load_pem_x509_crl(r.content) if r.content.lstrip().startswith(b"-----")
                   else x509.load_der_x509_crl(r.content))
        except ValueError as e:
            raise RemoteError(f"CRL {self.url}: not a CRL: {e}") from e
        issuer = next((c for c in issuers if c.subject == crl.issuer), None)
        if issuer is None or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            raise RemoteError(f"CRL {self.url}: signature does not verify against our intermediate")
        number = crl_number(crl)
        if number < self._number:
            raise RemoteError(f"CRL {self.url}: number {number} is older than {self._number} (rollback refused)")
        self._number = number
        self._etag = r.headers.get("ETag")
        next_update = crl.next_update_utc
        return FetchedCrl(crl.public_bytes(serialization.Encoding.PEM), number,
                          next_update.isoformat() if next_update else "", len(list(crl)))
