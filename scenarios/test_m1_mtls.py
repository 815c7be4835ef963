"""Milestone 1: service-a calls service-b over mTLS, with certificates issued by our CA.

Runs against the real system the lab starts (RA, CRL publisher, two agents, the C++ and the
Java service). Each action is recorded in the run's history; the checkers in zt.lab.checkers
turn that into the milestone's verdicts. The assertions here fail fast with the same
predicates the checkers apply.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from zt.lab import checkers, clients
from zt.lab.history import History
from zt.lab.identity import LabIdentity
from zt.lab.pins import curl_pin
from zt.lab.runtime import RunningLab

pytestmark = pytest.mark.milestone(1)

SERVICES = ["service-a", "service-b"]
# What a client sees when a server refuses its certificate, by TLS stack and version: the
# server-side reason (counted in mtls_handshake_failures_total) is the precise check.
NO_CERT_ALERTS = ("no_client_cert", "bad_certificate", "handshake_failure")
UNTRUSTED_ALERTS = ("untrusted", "certificate_unknown", "bad_certificate")


@pytest.mark.parametrize(
    "caller, callee, criterion",
    [
        ("service-a", "service-b", "m1.a_calls_b"),
        ("service-b", "service-a", "m1.b_calls_a"),
    ],
)
def test_service_calls_its_peer_over_mtls(
    lab: RunningLab, history: History, operator: LabIdentity, caller: str, callee: str, criterion: str
) -> None:
    op = clients.call_through(lab, history, criterion, caller, callee, operator)
    assert checkers.mutual_call(op) is None, checkers.mutual_call(op)


def test_curl_with_service_a_certificate_reaches_service_b(lab: RunningLab, history: History) -> None:
    a = lab.agent_identity("service-a")
    pin = curl_pin(lab.agent_identity("service-b").cert)
    op = clients.curl_hello(lab, history, "m1.curl_a_to_b", "service-b", a, ("-k", "--pinnedpubkey", pin))
    assert checkers.succeeded_as(op) is None, checkers.succeeded_as(op)


@pytest.mark.parametrize("service", SERVICES)
def test_client_without_certificate_is_refused(lab: RunningLab, history: History, service: str) -> None:
    op = clients.attempt_refused(lab, history, "m1.no_client_cert", service, None, NO_CERT_ALERTS, "no_client_cert")
    assert checkers.refused_for(op) is None, checkers.refused_for(op)


@pytest.mark.parametrize("service", SERVICES)
def test_certificate_from_foreign_ca_is_refused(
    lab: RunningLab, history: History, foreign_identity: Callable[[str], LabIdentity], service: str
) -> None:
    impostor = foreign_identity("operator")  # our SPIFFE ID, someone else's CA
    op = clients.attempt_refused(lab, history, "m1.foreign_ca", service, impostor, UNTRUSTED_ALERTS, "untrusted")
    assert checkers.refused_for(op) is None, checkers.refused_for(op)


@pytest.mark.parametrize("caller, callee", [("service-a", "service-b"), ("service-b", "service-a")])
def test_call_refuses_peer_with_wrong_identity(
    lab: RunningLab, history: History, operator: LabIdentity, caller: str, callee: str
) -> None:
    wrong = lab.topology.spiffe_id("not-" + callee)
    op = clients.call_through(lab, history, "m1.wrong_identity", caller, callee, operator, expect=wrong)
    assert checkers.rejected_with(op) is None, checkers.rejected_with(op)


def test_every_issued_certificate_passes_independent_validators(lab: RunningLab, history: History) -> None:
    intermediate = lab.work_dir / "ca" / "intermediate.pem"
    ops = clients.validate_issued(lab, history, "m1.certs_valid", intermediate)
    assert len(ops) >= 4  # the RA's own, both agents', the operator's
    bad = [o.details for o in ops if checkers.validated(o) is not None]
    assert bad == []
