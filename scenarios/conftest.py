"""Scenario fixtures on top of the lab plugin: the identities scenarios act with."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from zt.lab.identity import LabIdentity


@pytest.fixture(scope="module")
def operator(client_identity: Callable[..., LabIdentity]) -> LabIdentity:
    """The identity the test drives services with (spiffe://<td>/svc/operator)."""
    return client_identity("operator")
