"""The one exception tree of zt, so callers catch `ZtError` at their boundary.

    ZtError
    ├── ConfigError            bad flags, settings or files given by an operator (CLI: exit 2)
    ├── CaError                CA material missing, unreadable or inconsistent
    │   └── CaExistsError      `ztca init` would overwrite an existing CA
    ├── StoreError             the state store cannot be opened or is inconsistent
    ├── SvidError              a certificate or SPIFFE ID breaks the X509-SVID rules
    ├── InvalidValue           a value the core does not accept (an unknown revocation reason, ...)
    ├── RequestRejected        a client's request is refused; carries HTTP status and code
    │   ├── BadRequest         400 malformed CSR, JSON, name, unacceptable key
    │   ├── Unauthorized       401 missing/unknown/used/expired token, bad renewal proof
    │   ├── Forbidden          403 authenticated, but asks for what it may not have
    │   ├── NotFound           404
    │   ├── PayloadTooLarge    413
    │   └── RateLimited        429
    └── RemoteError            a peer (RA, CRL publisher) answered with an error or not at all

Third-party exceptions (cryptography, sqlite3, httpx) are mapped to these at one boundary
with `raise ... from`, so the cause stays in the log while the peer sees a short reason.
"""

from __future__ import annotations


class ZtError(Exception):
    """Root of every error zt raises on purpose."""


class ConfigError(ZtError):
    """An operator gave a bad flag, setting or file."""


class CaError(ZtError):
    """CA material is missing, unreadable or inconsistent."""


class CaExistsError(CaError):
    """Refusing to overwrite an existing CA without being told to."""


class StoreError(ZtError):
    """The state store cannot be opened, or holds something it should not."""


class SvidError(ZtError):
    """A certificate or SPIFFE ID breaks a rule of the SPIFFE X509-SVID standard."""


class InvalidValue(ZtError):
    """A value handed to the core is not one it accepts.

    The core (CA, store) says what is wrong in domain terms and knows nothing of HTTP; the RA's
    error boundary turns it into 400 and `ztca` into a usage error.
    """


class RequestRejected(ZtError):
    """A client's request is refused. `code` is a stable machine word, `reason` for humans."""

    status = 400
    code = "bad_request"

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code


class BadRequest(RequestRejected):
    status = 400
    code = "bad_request"


class Unauthorized(RequestRejected):
    status = 401
    code = "unauthorized"


class Forbidden(RequestRejected):
    status = 403
    code = "forbidden"


class NotFound(RequestRejected):
    status = 404
    code = "not_found"


class PayloadTooLarge(RequestRejected):
    status = 413
    code = "payload_too_large"


class RateLimited(RequestRejected):
    """429: over a rate limit (`rate_limited`) or locked out after failed tokens (`locked_out`);
    `retry_after` says in how many seconds the same request would be let through."""

    status = 429
    code = "rate_limited"

    def __init__(self, reason: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(reason, code=code)
        self.retry_after = max(0.0, retry_after)


class RemoteError(ZtError):
    """A peer answered with an error, or could not be reached.

    `status` is the HTTP status when there was an answer (None for transport failures), so
    callers can tell "retry later" (transport, 429, 5xx) from "give up" (401, 403, 400).
    `retry_after` is the peer's Retry-After in seconds when it sent one (a 429 from the RA's
    rate limit or lockout, a 503): retrying sooner would only be refused again.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        permanent: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.permanent = permanent  # e.g. the peer's certificate is not trusted: retrying cannot help
        self.retry_after = retry_after

    @property
    def is_transient(self) -> bool:
        if self.permanent:
            return False
        return self.status is None or self.status == 429 or self.status >= 500
