"""zt.ra.authorize: the RA's decisions, table-driven where the rule is data."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from cryptography.x509.verification import PolicyBuilder, VerificationError
from cryptography.x509.verification import Store as TrustStore

from tests.conftest import make_ca
from zt.ca.authority import Authority
from zt.ca.layout import CaPaths
from zt.errors import BadRequest, Forbidden
from zt.pki.keys import generate_key
from zt.ra.authorize import authorize_lifetime, authorize_registration
from zt.ra.store import SCHEMA_VERSION, Identity, Store
from zt.spiffe import parse_spiffe_id


@pytest.mark.parametrize(
    "asked, maximum, expected",
    [
        (None, 600, 600),
        (30, 600, 30),
        (600, 600, 600),
    ],
)
def test_authorize_lifetime_grants_within_bounds(asked: int | None, maximum: int, expected: int) -> None:
    assert authorize_lifetime(asked, dt.timedelta(seconds=maximum)) == dt.timedelta(seconds=expected)


@pytest.mark.parametrize("asked", [29, 601, 0, -5])
def test_authorize_lifetime_refuses_outside_bounds(asked: int) -> None:
    with pytest.raises(BadRequest) as e:
        authorize_lifetime(asked, dt.timedelta(seconds=600))
    assert e.value.code == "bad_ttl" and "between 30 and 600" in e.value.reason


def test_authorize_registration_reserved_and_revoked_names() -> None:
    with pytest.raises(BadRequest) as e:
        authorize_registration("zt-ra", None, reenable=True)
    assert e.value.code == "reserved_service_name"
    revoked = Identity("svc", "spiffe://zt.lab/svc/svc", 0.0, revoked_at=10.0, revocation_reason="key-compromise")
    with pytest.raises(Forbidden) as e2:
        authorize_registration("svc", revoked, reenable=False)
    assert e2.value.code == "revoked_identity" and "--reenable" in e2.value.reason
    authorize_registration("svc", revoked, reenable=True)


def test_cryptography_path_validation_still_refuses_uri_name_constraints(tmp_path: Path) -> None:
    """Why zt.ra.authorize.authorize_proof_chain does not use cryptography's verifier (yet).

    Our intermediate is name-constrained to the trust domain with a URI constraint; the
    verifier in cryptography (50.x) refuses any such chain. When this test starts failing,
    the verifier supports it: switch authorize_proof_chain to PolicyBuilder/ClientVerifier.
    """
    ca = make_ca(tmp_path)
    authority = Authority.load(CaPaths(ca.dir), "zt.lab")
    now = dt.datetime.now(dt.UTC)
    leaf = authority.sign_leaf(
        generate_key().public_key(), parse_spiffe_id("spiffe://zt.lab/svc/a"), dt.timedelta(hours=1), now, None
    )
    verifier = PolicyBuilder().store(TrustStore(list(authority.roots))).time(now).build_client_verifier()
    with pytest.raises(VerificationError, match="unsupported name constraint"):
        verifier.verify(leaf, [authority.certificate])


def test_schema_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    conn = sqlite3.connect(ca.paths.store)
    # Turn the fresh store back into a schema-1 one: drop what schema 2 added.
    conn.executescript(
        "DROP INDEX certificates_renews; ALTER TABLE certificates DROP COLUMN renews;"
        "ALTER TABLE identities DROP COLUMN revoked_at; ALTER TABLE identities DROP COLUMN revocation_reason;"
        "UPDATE meta SET value='1' WHERE key='schema_version';"
    )
    conn.close()
    assert ca.ztca("register", "svc").code == 0
    store = Store(ca.paths.store)
    assert store.meta("schema_version") == str(SCHEMA_VERSION)
    assert store.identity("svc") is not None and not store.identity("svc").revoked  # type: ignore[union-attr]
