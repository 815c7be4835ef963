"""A bootstrap issuance between its signature and its recording transaction.

The worker that answers the request checks the token and the CSR and signs (zt.ra.service);
the recording (spend the token, record the certificate, count the limits, audit) runs in a
group commit, in the worker's own writer thread (zt.ra.group_commit) or in the host's recorder
process (zt.ra.commit_server, fed over zt.ra.commit_wire). This is what travels between them.
"""

from __future__ import annotations

import datetime as dt
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from zt.ra.authorize import Grant
from zt.ra.ratelimit import SourceTicket
from zt.ra.store_api import CertRecord

# What recording an issuance ends in: None (recorded), the certificate an earlier request with
# the same token and key already bought (an idempotent retry), or the refusal or failure to
# answer with (a limit's refusal is returned, not raised: its count and audit row commit).
IssueOutcome = CertRecord | Exception | None


@dataclass(frozen=True)
class SignedIssue:
    grant: Grant
    csr: x509.CertificateSigningRequest
    csr_pem: str
    spki: str
    token_hash: str
    now: dt.datetime
    lifetime: dt.timedelta
    ticket: SourceTicket | None
    record: CertRecord


class IssueRecorder(Protocol):
    """Where a worker's signed issuances are recorded (zt.ra.commit_client.RemoteCommit)."""

    async def record(self, signed: SignedIssue) -> IssueOutcome:
        """Record `signed` in a durable group commit; return its outcome."""
        ...

    def expect(self) -> AbstractContextManager[None]:
        """Around one request that will likely call `record` (zt.ra.fast_issue)."""
        ...

    async def aclose(self) -> None:
        """Drop the connection; pending requests fail."""
        ...
