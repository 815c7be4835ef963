"""Milestone 3's criteria whose evidence comes from scenarios/test_m3_stale_crl.py (wt-m3b).

PLACEHOLDERS. The helper building the stale-CRL scenario (branch wt-m3b) replaces this whole
module with the real predicates, keeping the criterion ids and the tuple name `M3B`, which
zt.lab.milestones registers after zt.lab.checks_m3.M3. Until then each criterion can only be
`unknown` (no operations: the scenario does not exist) or `fail` (any operation recorded is
judged by a predicate that refuses to pass): never `pass`.
"""

from __future__ import annotations

from zt.lab.checkers import Criterion
from zt.lab.history import Operation

PENDING = "placeholder predicate: the stale-CRL scenario's checker (wt-m3b) has not been merged"


def pending_stale_crl(o: Operation) -> str | None:
    return PENDING


def pending_large_crl(o: Operation) -> str | None:
    return PENDING


def pending_crls_valid(o: Operation) -> str | None:
    return PENDING


M3B = (
    Criterion(
        "m3.stale_crl",
        3,
        "past nextUpdate: refuse mode refuses every handshake, warn mode serves; both say so and recover",
        pending_stale_crl,
    ),
    Criterion(
        "m3.large_crl",
        3,
        "with a 100,000-entry CRL the handshake rate stays >= 90% of the no-CRL rate",
        pending_large_crl,
    ),
    Criterion("m3.crls_valid", 3, "every CRL the run produced passes the RFC 5280 CRL lint", pending_crls_valid),
)
