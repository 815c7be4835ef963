"""The messages between the RA's HTTP workers and its recorder process (zt.ra.commit_server).

A worker has checked and signed an issuance (zt.ra.service.SignedIssue); the recorder spends
the token and records the certificate in a group commit shared by every worker of the host.
This module is the whole protocol: length-prefixed JSON frames over a Unix socket, one
request frame per issuance and one answer frame per request, matched by `id`.

JSON, not pickle: the recorder runs nothing a peer sends, it only reads values (and checks the
peer's uid before it reads anything). A frame is at most `MAX_FRAME` bytes; anything else that
does not parse is a `WireError`, and the side that reads it drops the connection.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
from typing import Any

from cryptography import x509

from zt.errors import (
    BadRequest,
    CaError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestRejected,
    StoreError,
    Unauthorized,
    ZtError,
)
from zt.ra.authorize import Grant
from zt.ra.ratelimit import SourceTicket
from zt.ra.signed_issue import IssueOutcome, SignedIssue
from zt.ra.store_api import CertRecord, Identity

# One issuance is about 2 KB (the leaf's PEM, the CSR's); a frame this large is not ours.
MAX_FRAME = 256 * 1024
_HEAD = struct.Struct(">I")

# The refusals a recording may end in, by name: each is rebuilt as itself, so the worker's
# error boundary answers exactly as it would for the in-process group commit.
_REFUSALS: dict[str, type[RequestRejected]] = {
    cls.__name__: cls for cls in (BadRequest, Unauthorized, Forbidden, NotFound, PayloadTooLarge)
}


class WireError(ZtError):
    """A frame that is not one of ours: too large, not JSON, or missing a field."""


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise WireError(f"message of {len(body)} bytes is larger than {MAX_FRAME}")
    return _HEAD.pack(len(body)) + body


class FrameReader:
    """Frames out of a byte stream that arrives in arbitrary pieces."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out: list[dict[str, Any]] = []
        while len(self._buf) >= _HEAD.size:
            (size,) = _HEAD.unpack_from(self._buf)
            if size > MAX_FRAME:
                raise WireError(f"frame of {size} bytes is larger than {MAX_FRAME}")
            end = _HEAD.size + size
            if len(self._buf) < end:
                break
            try:
                message = json.loads(bytes(self._buf[_HEAD.size : end]))
            except (ValueError, UnicodeDecodeError) as e:
                raise WireError(f"frame is not JSON: {e}") from e
            del self._buf[:end]
            if not isinstance(message, dict):
                raise WireError("frame is not a JSON object")
            out.append(message)
        return out


# -- an issuance to record ---------------------------------------------------------------------


def _fields(value: Identity | CertRecord) -> dict[str, Any]:
    """A flat dataclass of plain values as a dict: `dataclasses.asdict` deep-copies field by
    field (9 microseconds for a CertRecord, 0.4 this way), on the worker's event loop."""
    return dict(vars(value))


def issue_to_wire(s: SignedIssue) -> dict[str, Any]:
    g = s.grant
    return {
        "identity": _fields(g.identity),
        "lifetime": s.lifetime.total_seconds(),  # the grant's too: a token grants the lifetime asked for
        "via": g.via,
        "renews": g.renews,
        "csr": s.csr_pem,
        "spki": s.spki,
        "token_hash": s.token_hash,
        "now": s.now.timestamp(),
        "ticket": None if s.ticket is None else [s.ticket.source, s.ticket.endpoint, s.ticket.settled],
        "record": _fields(s.record),
    }


def issue_from_wire(d: dict[str, Any]) -> SignedIssue:
    """The issuance as the worker signed it. Its CSR's signature was verified there; here it
    is only read again for the identity check under the write lock."""
    try:
        csr = x509.load_pem_x509_csr(str(d["csr"]).encode())
        ticket = d["ticket"]
        lifetime = dt.timedelta(seconds=float(d["lifetime"]))
        return SignedIssue(
            grant=Grant(
                identity=Identity(**d["identity"]),
                lifetime=lifetime,
                via=str(d["via"]),
                renews=d["renews"],
            ),
            csr=csr,
            csr_pem=str(d["csr"]),
            spki=str(d["spki"]),
            token_hash=str(d["token_hash"]),
            now=dt.datetime.fromtimestamp(float(d["now"]), dt.UTC),
            lifetime=lifetime,
            ticket=None if ticket is None else SourceTicket(str(ticket[0]), str(ticket[1]), bool(ticket[2])),
            record=CertRecord(**d["record"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise WireError(f"not an issuance: {e!r}") from e


# -- its outcome -------------------------------------------------------------------------------


def outcome_to_wire(outcome: IssueOutcome, settled: bool) -> dict[str, Any]:
    """None (recorded), the earlier certificate of a retry, or the refusal or failure."""
    if outcome is None:
        return {"settled": settled}
    if isinstance(outcome, CertRecord):
        return {"settled": settled, "earlier": _fields(outcome)}
    error: dict[str, Any] = {"type": type(outcome).__name__, "reason": str(outcome)}
    if isinstance(outcome, RequestRejected):
        error |= {"reason": outcome.reason, "code": outcome.code}
    if isinstance(outcome, RateLimited):
        error["retry_after"] = outcome.retry_after
    return {"settled": settled, "error": error}


def outcome_from_wire(d: dict[str, Any]) -> tuple[IssueOutcome, bool]:
    """(the outcome, whether the source's count was taken in the transaction)."""
    try:
        settled = bool(d["settled"])
        if "earlier" in d:
            return CertRecord(**d["earlier"]), settled
        error = d.get("error")
        if error is None:
            return None, settled
        kind, reason = str(error["type"]), str(error["reason"])
        if kind == "RateLimited":
            return RateLimited(reason, retry_after=float(error["retry_after"]), code=error.get("code")), settled
        if kind in _REFUSALS:
            return _REFUSALS[kind](reason, code=error.get("code")), settled
        if kind == "CaError":
            return CaError(reason), settled
        return StoreError(reason), settled
    except (KeyError, TypeError, ValueError) as e:
        raise WireError(f"not an outcome: {e!r}") from e
