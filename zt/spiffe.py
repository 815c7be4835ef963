"""SPIFFE IDs: parsing and validation per the SPIFFE-ID standard (spiffe/spiffe, SPIFFE-ID.md).

A SPIFFE ID is `spiffe://<trust-domain><path>`:
- scheme `spiffe`, lowercase; no query, fragment, userinfo or port (SPIFFE-ID 2);
- the trust domain is non-empty, lowercase `a-z 0-9 . - _`, no percent-encoding (2.1);
- path segments are non-empty, not `.` or `..`, made of `A-Z a-z 0-9 . - _` (2.2);
- at most 2048 bytes in all (2.3).
A workload (leaf) SVID needs a non-root path (X509-SVID 3.1); a CA's ID, if any, has none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zt.errors import SvidError

SCHEME_PREFIX = "spiffe://"
MAX_ID_BYTES = 2048
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
# A service name becomes one path segment; 64 keeps IDs and file names reasonable.
_SERVICE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class SpiffeId:
    trust_domain: str
    path: str  # "" for the trust domain's own ID, else "/seg/seg"

    def __str__(self) -> str:
        return f"{SCHEME_PREFIX}{self.trust_domain}{self.path}"

    @property
    def is_root(self) -> bool:
        return self.path == ""


def validate_trust_domain(name: str) -> str:
    if not name or not _TRUST_DOMAIN.fullmatch(name):
        raise SvidError(
            f"invalid trust domain {name!r}: use lowercase letters, digits, '.', '-' and '_' (SPIFFE-ID 2.1)"
        )
    if len(name) > 255:
        raise SvidError("invalid trust domain: longer than 255 characters")
    return name


def parse_spiffe_id(text: str) -> SpiffeId:
    """Parse and validate; raise SvidError saying which rule was broken."""
    if len(text.encode()) > MAX_ID_BYTES:
        raise SvidError(f"SPIFFE ID longer than {MAX_ID_BYTES} bytes (SPIFFE-ID 2.3)")
    if not text.startswith(SCHEME_PREFIX):
        raise SvidError(f"not a SPIFFE ID (scheme must be lowercase 'spiffe://'): {text!r}")
    rest = text[len(SCHEME_PREFIX) :]
    trust_domain, slash, path = rest.partition("/")
    for bad, what in (("@", "userinfo"), (":", "port"), ("?", "query"), ("#", "fragment"), ("%", "percent-encoding")):
        if bad in rest:
            raise SvidError(f"SPIFFE ID must not contain {what} ({bad!r}): {text!r}")
    validate_trust_domain(trust_domain)
    if not slash:
        return SpiffeId(trust_domain, "")
    segments = path.split("/")
    for seg in segments:
        if seg == "":
            raise SvidError(f"SPIFFE ID path has an empty segment or trailing '/': {text!r}")
        if seg in (".", ".."):
            raise SvidError(f"SPIFFE ID path segment must not be '.' or '..': {text!r}")
        if not _SEGMENT.fullmatch(seg):
            raise SvidError(f"SPIFFE ID path segment {seg!r} has characters outside A-Z a-z 0-9 . - _")
    return SpiffeId(trust_domain, "/" + path)


def validate_service_name(name: str) -> str:
    """A service name is one safe path segment; refuse anything else with a clear reason."""
    if not _SERVICE_NAME.fullmatch(name) or name in (".", ".."):
        raise SvidError(f"invalid service name {name!r}: 1-64 characters of A-Z a-z 0-9 . - _, not '.' or '..'")
    return name


def workload_id(trust_domain: str, service: str) -> SpiffeId:
    """The SPIFFE ID zt gives a registered service: spiffe://<td>/svc/<service>."""
    validate_service_name(service)
    return SpiffeId(validate_trust_domain(trust_domain), f"/svc/{service}")


def service_of(spiffe_id: SpiffeId) -> str | None:
    """The service name of a zt workload ID, or None if the ID is not of that shape."""
    parts = spiffe_id.path.split("/")
    if len(parts) == 3 and parts[1] == "svc":
        return parts[2]
    return None
