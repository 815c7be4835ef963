"""Fetching the CRL for the services: conditional GET, bounded read, verify, refuse rollbacks.

A CRL is written only if it is signed by an issuer we hold (the intermediate from our verified
chain or a pinned root), is current (RFC 5280 5.1.2.4-5: thisUpdate not in the future,
nextUpdate present and not passed) and is not older than the one already written. The CRL
number (RFC 5280 5.2.3) orders CRLs, so a lower number is a replayed old CRL that would
un-revoke certificates; the highest number seen is taken from `crl.pem` on disk at start, so a
restart does not forget it. An equal number with other content is refused as well (a CA never
issues two different CRLs under one number). The body is streamed and the download stops at
`max_bytes`, so a hostile or broken publisher cannot make the agent buffer an endless answer.
`If-None-Match` keeps an unchanged CRL to a 304.

Long-poll (RFC 7240 4.3): with an ETag in hand the request also says `Prefer: wait=N`, and a
publisher that supports it holds the request until the CRL changes (200 at once) or N seconds
pass (304). `next_fetch_delay` decides when to ask again: at once after a held 304 or a new
CRL, after `interval` when the 304 came back early (a publisher without long-poll), or after
an error or a rejected CRL. The decision looks at how long the answer really took, not at the
`Preference-Applied` header, so no publisher, however broken, can make the agent spin.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zt.clock import rfc3339
from zt.errors import RemoteError
from zt.pki.crls import crl_number

TIMEOUT = httpx.Timeout(5.0, connect=3.0)
# A held request is read with this much slack beyond the wait asked for (the publisher answers
# 304 at the end of the wait; network and scheduling on a loaded machine add to it).
WAIT_SLACK = 10.0
MAX_CRL_BYTES = 10 * 1024 * 1024  # a CRL with 100 000 entries is ~3.5 MB DER (~4.7 MB PEM)
CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class FetchedCrl:
    pem: bytes
    number: int
    next_update: str
    entries: int
    this_update: dt.datetime
    revoked: frozenset[int]  # the serials on it (the agent looks for its own)


class CrlRefused(RemoteError):
    """The publisher answered with a CRL we will not write; `why` is a stable word, `fields`
    the numbers behind it (for the `crl_rejected` log event)."""

    def __init__(self, message: str, why: str, **fields: Any) -> None:
        super().__init__(message)
        self.why = why
        self.fields = fields


def parse_crl(data: bytes) -> x509.CertificateRevocationList:
    """PEM or DER; ValueError when it is neither."""
    return x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----") else x509.load_der_x509_crl(data)


def issuer_of(crl: x509.CertificateRevocationList, issuers: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The issuer among `issuers` whose key signed `crl` (matched by name, then signature)."""
    for c in issuers:
        if c.subject == crl.issuer and crl.is_signature_valid(c.public_key()):  # type: ignore[arg-type]
            return c
    return None


@dataclass
class CrlState:
    """The newest CRL we wrote: its number and DER (to tell "same" from "same number, other")."""

    number: int = -1
    der: bytes = field(default=b"", repr=False)
    this_update: dt.datetime | None = None
    revoked: frozenset[int] = field(default=frozenset(), repr=False)


def state_from_file(data: bytes | None, issuers: Sequence[x509.Certificate]) -> CrlState:
    """The state a previous run left in `crl.pem`; empty when absent, unreadable or not ours."""
    if not data:
        return CrlState()
    try:
        crl = parse_crl(data)
        if issuer_of(crl, issuers) is None:
            return CrlState()
        return CrlState(
            crl_number(crl),
            crl.public_bytes(serialization.Encoding.DER),
            crl.last_update_utc,
            frozenset(r.serial_number for r in crl),
        )
    except (ValueError, x509.ExtensionNotFound):
        return CrlState()


class CrlFetcher:
    def __init__(self, url: str, state: CrlState | None = None, max_bytes: int = MAX_CRL_BYTES) -> None:
        self.url = url
        self.state = state or CrlState()
        self.max_bytes = max_bytes
        self._etag: str | None = None
        self._pending_etag: str | None = None
        self.asked_wait = 0  # the wait (s) the last request asked for; 0 when it was not a long-poll
        self._http = httpx.Client(timeout=TIMEOUT, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def _download(self, wait: float) -> bytes | None:
        """The body, or None on 304; stops reading once `max_bytes` is exceeded. With an ETag
        and `wait` > 0 the request is a long-poll (`Prefer: wait=N`, N whole seconds)."""
        headers = {"If-None-Match": self._etag} if self._etag else {}
        timeout = TIMEOUT
        self.asked_wait = 0
        if self._etag and wait > 0:
            self.asked_wait = max(1, math.ceil(wait))
            headers["Prefer"] = f"wait={self.asked_wait}"
            timeout = httpx.Timeout(self.asked_wait + WAIT_SLACK, connect=3.0)
        try:
            with self._http.stream("GET", self.url, headers=headers, timeout=timeout) as r:
                if r.status_code == 304:
                    return None
                if r.status_code != 200:
                    raise RemoteError(f"CRL {self.url}: HTTP {r.status_code}", status=r.status_code)
                declared = r.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                    raise CrlRefused(
                        f"CRL {self.url}: {declared} bytes announced, more than the cap of {self.max_bytes}",
                        "too_large",
                        announced=int(declared),
                        max_bytes=self.max_bytes,
                    )
                body = bytearray()
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise CrlRefused(
                            f"CRL {self.url}: more than the cap of {self.max_bytes} bytes, stopped reading",
                            "too_large",
                            read=len(body),
                            max_bytes=self.max_bytes,
                        )
                etag = r.headers.get("ETag")
        except httpx.HTTPError as e:
            raise RemoteError(f"CRL {self.url}: {type(e).__name__}: {e}") from e
        self._pending_etag = etag
        return bytes(body)

    def fetch(self, issuers: Sequence[x509.Certificate], now: dt.datetime, wait: float = 0.0) -> FetchedCrl | None:
        """The new CRL to write, or None when nothing changed; CrlRefused when it must not be
        written. The state only moves forward once a CRL passed every check. `wait` > 0 asks
        the publisher to hold the request that long while the CRL is unchanged."""
        data = self._download(wait)
        if data is None:
            return None
        try:
            crl = parse_crl(data)
        except ValueError as e:
            raise CrlRefused(f"CRL {self.url}: not a CRL: {e}", "unreadable") from e
        if issuer_of(crl, issuers) is None:
            raise CrlRefused(
                f"CRL {self.url}: signature does not verify against our intermediate or roots",
                "bad_signature",
                issuer=crl.issuer.rfc4514_string(),
            )
        try:
            number = crl_number(crl)
        except x509.ExtensionNotFound as e:  # RFC 5280 5.2.3: conforming CRL issuers MUST include it
            raise CrlRefused(f"CRL {self.url}: no CRL number", "no_number") from e
        next_update = crl.next_update_utc
        if next_update is None:  # RFC 5280 5.1.2.5: conforming CRL issuers MUST include nextUpdate
            raise CrlRefused(f"CRL {self.url}: no nextUpdate", "no_next_update", crl_number=number)
        if next_update <= now:
            raise CrlRefused(
                f"CRL {self.url}: number {number} expired at {rfc3339(next_update)} (now {rfc3339(now)}): refused",
                "expired",
                crl_number=number,
                next_update=rfc3339(next_update),
                now=rfc3339(now),
            )
        if crl.last_update_utc > now + CLOCK_SKEW:
            raise CrlRefused(
                f"CRL {self.url}: number {number} is dated in the future ({rfc3339(crl.last_update_utc)})",
                "not_yet_valid",
                crl_number=number,
                this_update=rfc3339(crl.last_update_utc),
                now=rfc3339(now),
            )
        der = crl.public_bytes(serialization.Encoding.DER)
        if number < self.state.number:
            raise CrlRefused(
                f"CRL {self.url}: number {number} is older than {self.state.number} (rollback refused)",
                "rollback",
                crl_number=number,
                have_number=self.state.number,
            )
        if number == self.state.number:
            if der != self.state.der:
                raise CrlRefused(
                    f"CRL {self.url}: number {number} again but with other content: refused",
                    "conflicting_number",
                    crl_number=number,
                    have_number=self.state.number,
                )
            self._etag = self._pending_etag
            return None  # the one we already wrote (e.g. first fetch after a restart)
        revoked = frozenset(r.serial_number for r in crl)
        self.state = CrlState(number, der, crl.last_update_utc, revoked)
        self._etag = self._pending_etag
        return FetchedCrl(
            crl.public_bytes(serialization.Encoding.PEM),
            number,
            rfc3339(next_update),
            len(revoked),
            crl.last_update_utc,
            revoked,
        )


def next_fetch_delay(result: str, asked_wait: float, elapsed: float, interval: float) -> float:
    """Seconds to wait before the next CRL request, given how the last one ended.

    `result` is the `crl_fetch_total` label. A new CRL: ask again at once (a long-poll
    publisher holds the next request; one without answers 304 early, caught below). A 304
    that was really held (it took at least half the wait asked for): at once, the publisher
    paces us. A 304 answered early (no long-poll on the other side, or no wait was asked),
    an error or a rejected CRL: the periodic fallback, `interval`.
    """
    if result == "updated":
        return 0.0
    if result == "not_modified" and asked_wait > 0 and elapsed >= asked_wait / 2:
        return 0.0
    return interval
