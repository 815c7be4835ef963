"""The agent's client for the RA: HTTPS trusted only through the pinned trust bundle.

The bundle file is the agent's one root of trust (optionally pinned by its SHA-256, as
`bundle.pem.sha256` from `ztca init` gives it), never the system CA store: the context comes
from `zt.agent.trust.tls_context` and httpx is handed that context as is (`verify=ctx`), with
`trust_env=False` so no environment variable (SSL_CERT_FILE, proxies, netrc) changes whom we
talk to or what we send. A server whose certificate does not chain to the bundle fails the
handshake, before any request (and so before the bootstrap token) is sent.

Several RA replicas (`--ra` given more than once, docs/scaling.md): every request goes to the
replica that answered last; on a connection error or a 5xx it moves on to the next, after a
short backoff, until each was tried once, and then raises the last error (the caller's own
retry schedule takes over). A 4xx is the RA's answer, not the replica's failure: it is never
retried elsewhere, so a bootstrap token refused by one replica is not offered to another. An
RA certificate that does not verify is permanent: it stops the round at once. `answered_by`
names the replica that gave the last answer, for the caller's log lines.

Retrying an issuance on another replica cannot spend a token twice: the token is spent in the
store's transaction, and a retry with the same CSR after a lost answer is given the same
certificate (zt.ra.authorize).

A refusal with `Retry-After` (the RA's rate limit and token lockout answer 429 with it,
docs/rate-limits.md) carries the delay on the error, so the caller's retry waits at least that
long instead of spending its attempts on answers it already knows.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from cryptography import x509

from zt.agent.trust import tls_context
from zt.errors import ConfigError, RemoteError
from zt.logjson import log_event

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# Between one replica's failure and the next replica: 0.2 s, 0.4 s, ... at most 2 s.
FAILOVER_BACKOFF = 0.2
FAILOVER_BACKOFF_MAX = 2.0

# A Retry-After longer than this is taken as this: a broken or hostile answer must not park
# the agent past its certificate's renewal window (docs/rate-limits.md's longest wait is 5 min).
RETRY_AFTER_MAX = 600.0

log = logging.getLogger("zt.agent.ra")


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from now that a `Retry-After` header asks for (RFC 9110 section 10.2.3: a
    non-negative integer of seconds, or an HTTP-date), capped at RETRY_AFTER_MAX; None when the
    header is missing or neither form (a malformed header is ignored, not trusted)."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(int(text)), RETRY_AFTER_MAX)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a date without a zone is taken as such
        when = when.replace(tzinfo=dt.UTC)
    left = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    return min(max(0.0, left), RETRY_AFTER_MAX)


def _is_untrusted(exc: BaseException) -> bool:
    """True when the failure is the RA's certificate not verifying against our bundle."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class RaClient:
    def __init__(
        self,
        base_urls: str | Sequence[str],
        roots: Sequence[x509.Certificate],
        *,
        backoff: float = FAILOVER_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ConfigError("give at least one RA URL")
        for url in urls:
            if not url.startswith("https://"):
                raise ConfigError(f"RA URL must be https://, got {url!r}")
        self.urls = [u.rstrip("/") for u in urls]
        self.tls = tls_context(roots)
        self._http = [httpx.Client(base_url=u, verify=self.tls, timeout=TIMEOUT, trust_env=False) for u in self.urls]
        self._current = 0
        self._backoff = backoff
        self._sleep = sleep
        self.answered_by: str | None = None

    def close(self) -> None:
        for client in self._http:
            client.close()

    def _post(self, path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        """One request, to each replica in turn from the last one that answered (module doc)."""
        last: RemoteError | None = None
        for attempt in range(len(self._http)):
            i = (self._current + attempt) % len(self._http)
            if attempt:
                self._sleep(min(self._backoff * 2 ** (attempt - 1), FAILOVER_BACKOFF_MAX))
            try:
                return self._post_to(i, path, body, token)
            except RemoteError as e:
                if e.permanent or (e.status is not None and e.status < 500):
                    raise
                last = e
                if len(self._http) > 1:
                    nxt = self.urls[(i + 1) % len(self._http)]
                    log_event(log, "ra_failover", logging.WARNING, ra=self.urls[i], next_ra=nxt, reason=str(e))
        assert last is not None
        raise last

    def _post_to(self, i: int, path: str, body: dict[str, Any], token: str | None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = self.urls[i]
        try:
            r = self._http[i].post(path, json=body, headers=headers)
        except httpx.HTTPError as e:
            raise RemoteError(f"RA {url}{path}: {type(e).__name__}: {e}", permanent=_is_untrusted(e)) from e
        try:
            doc = r.json()
        except ValueError as e:
            raise RemoteError(f"RA {url}{path}: HTTP {r.status_code} with a non-JSON body", status=r.status_code) from e
        if r.status_code < 500:  # an answer, even a refusal: this replica is up
            self._current = i
            self.answered_by = url
        if r.status_code != 200:
            raise RemoteError(
                f"RA {url}{path}: HTTP {r.status_code} {doc.get('error')}: {doc.get('reason')}",
                status=r.status_code,
                code=doc.get("error"),
                retry_after=retry_after_seconds(r.headers.get("Retry-After")),
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
