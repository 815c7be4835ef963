"""The RA's decisions with a fake clock: tokens, renewal proofs, revocation, CRL scheduling."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import make_ca
from zt.agent.material import build_csr, csr_pem
from zt.ca.authority import Authority
from zt.ca.layout import CaPaths
from zt.clock import FakeClock
from zt.errors import BadRequest, Forbidden, RateLimited, RequestRejected, Unauthorized
from zt.pki.keys import generate_key
from zt.pki.renewal_proof import make_renewal_proof
from zt.ra import tokens
from zt.ra.limits import BOOTSTRAP_TOKEN, Limits, LockoutPolicy, Rate
from zt.ra.lockout import Lockout
from zt.ra.ratelimit import RateLimiter
from zt.ra.revocation import CrlState, is_crl_due, refresh_crl_if_due
from zt.ra.service import RegistrationAuthority
from zt.ra.store import Store
from zt.ra.store_open import open_store

SID = "spiffe://zt.lab/svc/a"


@pytest.fixture
def ra(tmp_path: Path, store_url: str | None) -> Iterator[RegistrationAuthority]:
    """On each store backend (tests/conftest.py: store_url)."""
    ca = make_ca(tmp_path, *(["--store", store_url] if store_url else []))
    paths = CaPaths(ca.dir)
    store = open_store(store_url, paths)
    store.check()
    yield RegistrationAuthority(
        store,
        Authority.load(paths, "zt.lab"),
        paths,
        FakeClock(),
        leaf_ttl=dt.timedelta(minutes=10),
        crl_url=None,
    )
    store.close()


def clock(ra: RegistrationAuthority) -> FakeClock:
    assert isinstance(ra.clock, FakeClock)
    return ra.clock


def bootstrap(ra: RegistrationAuthority, service: str = "a"):
    token = ra.register(service).token
    key = generate_key()
    issued = ra.issue(token, csr_pem(build_csr(key, f"spiffe://zt.lab/svc/{service}")))
    return key, issued, token


def renew_request(ra: RegistrationAuthority, key, issued, new_key=None):
    new_key = new_key or generate_key()
    csr = build_csr(new_key, issued.record.spiffe_id)
    chain = x509.load_pem_x509_certificates(issued.chain_pem.encode())
    proof = make_renewal_proof(
        key, chain, issued.record.spiffe_id, csr.public_bytes(serialization.Encoding.DER), ra.clock.now()
    )
    return proof, csr_pem(csr)


def test_token_is_single_use(ra: RegistrationAuthority) -> None:
    _, _, token = bootstrap(ra)
    with pytest.raises(Unauthorized) as e:
        ra.issue(token, csr_pem(build_csr(generate_key(), SID)))
    assert e.value.code == "used_token"


def test_retry_with_same_token_and_same_key_returns_same_certificate(ra: RegistrationAuthority) -> None:
    token = ra.register("a").token
    key = generate_key()
    first = ra.issue(token, csr_pem(build_csr(key, SID)))
    again = ra.issue(token, csr_pem(build_csr(key, SID)))
    assert again.record.serial == first.record.serial
    assert len(ra.store.certificates()) == 1


def test_token_expires(ra: RegistrationAuthority) -> None:
    token = ra.register("a", dt.timedelta(seconds=60)).token
    clock(ra).advance(61)
    with pytest.raises(Unauthorized) as e:
        ra.issue(token, csr_pem(build_csr(generate_key(), SID)))
    assert e.value.code == "expired_token"


def test_unknown_and_missing_token(ra: RegistrationAuthority) -> None:
    for tok, code in (("ztb_nope", "unknown_token"), (None, "missing_token")):
        with pytest.raises(Unauthorized) as e:
            ra.issue(tok, csr_pem(build_csr(generate_key(), SID)))
        assert e.value.code == code


def test_locked_out_source_is_refused_before_its_token_or_csr_is_looked_at(ra: RegistrationAuthority) -> None:
    """The lockout's row is read with the token (one statement) but decides first."""
    ra.lockout = Lockout(ra.store, LockoutPolicy(2, 1.0, 10.0), ra.clock)
    csr = csr_pem(build_csr(generate_key(), SID))
    with pytest.raises(Unauthorized):
        ra.issue(tokens.new_token(tokens.BOOTSTRAP_PREFIX), csr, source="s")
    with pytest.raises(RateLimited) as e:
        ra.issue(tokens.new_token(tokens.BOOTSTRAP_PREFIX), csr, source="s")  # the 2nd failure locks
    assert e.value.code == "locked_out"
    token = ra.register("a").token
    for presented in (csr, "not a csr"):
        with pytest.raises(RateLimited) as e:
            ra.issue(token, presented, source="s")
        assert e.value.code == "locked_out"
    assert ra.issue(token, csr, source="other").record.spiffe_id == SID  # nor was the token spent
    clock(ra).advance(1.0)
    ra.issue(ra.register("a").token, csr_pem(build_csr(generate_key(), SID)), source="s")
    assert ra.store.token_failures(ra.store.read(), "s", BOOTSTRAP_TOKEN) is None  # a good token forgets


def test_identity_over_its_limit_is_refused_before_signing_and_keeps_its_token(
    ra: RegistrationAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The identity's window is read with the token (one statement) and refuses before signing."""
    ra.limiter = RateLimiter(ra.store, Limits(issue=Rate(2, 60)), ra.clock)
    bootstrap(ra)
    bootstrap(ra)
    clock(ra).advance(10)
    token = ra.register("a").token
    with monkeypatch.context() as m:
        m.setattr(ra, "_sign", lambda *a: pytest.fail("signed a request over its limit"))
        with pytest.raises(RateLimited) as e:
            ra.issue(token, csr_pem(build_csr(generate_key(), SID)), source="s")
    assert e.value.code == "rate_limited" and e.value.retry_after == pytest.approx(50.0)
    clock(ra).advance(50.01)
    assert ra.issue(token, csr_pem(build_csr(generate_key(), SID)), source="s").record.spiffe_id == SID


def test_csr_for_another_identity_is_forbidden_and_token_not_spent(ra: RegistrationAuthority) -> None:
    token = ra.register("a").token
    with pytest.raises(Forbidden) as e:
        ra.issue(token, csr_pem(build_csr(generate_key(), "spiffe://zt.lab/svc/b")))
    assert "allows only spiffe://zt.lab/svc/a" in e.value.reason
    ra.issue(token, csr_pem(build_csr(generate_key(), SID)))  # still usable


def test_csr_with_extra_san_is_forbidden(ra: RegistrationAuthority) -> None:
    token = ra.register("a").token
    key = generate_key()
    from zt.pki.keys import signature_hash

    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(SID), x509.DNSName("evil.example")]),
            critical=False,
        )
        .sign(key, signature_hash(key))  # type: ignore[arg-type]
    )
    with pytest.raises(Forbidden):
        ra.issue(token, csr_pem(csr))


@pytest.mark.parametrize(
    "csr, code",
    [
        ("", "malformed_csr"),
        ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "malformed_csr"),
        ("hello", "malformed_csr"),
    ],
)
def test_garbage_csr_is_bad_request(ra: RegistrationAuthority, csr: str, code: str) -> None:
    token = ra.register("a").token
    with pytest.raises(BadRequest) as e:
        ra.issue(token, csr)
    assert e.value.code == code


def test_weak_rsa_key_is_refused(ra: RegistrationAuthority) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    token = ra.register("a").token
    weak = rsa.generate_private_key(65537, 1024)
    with pytest.raises(BadRequest) as e:
        ra.issue(token, csr_pem(build_csr(weak, SID)))
    assert e.value.code == "unacceptable_key"


def test_ttl_bounds(ra: RegistrationAuthority) -> None:
    token = ra.register("a").token
    for ttl in (29, 601):
        with pytest.raises(BadRequest) as e:
            ra.issue(token, csr_pem(build_csr(generate_key(), SID)), ttl)
        assert e.value.code == "bad_ttl"
    issued = ra.issue(token, csr_pem(build_csr(generate_key(), SID)), 30)
    assert issued.record.not_after - issued.record.not_before <= 33


def test_renew_keeps_identity_and_needs_fresh_key_proof(ra: RegistrationAuthority) -> None:
    key, issued, _ = bootstrap(ra)
    proof, csr = renew_request(ra, key, issued)
    renewed = ra.renew(proof, csr)
    assert renewed.record.spiffe_id == SID
    assert renewed.record.serial != issued.record.serial
    assert renewed.record.via == "renew"
    with pytest.raises(Unauthorized) as e:  # the same proof again is a replay
        ra.renew(proof, csr)
    assert e.value.code == "replayed_proof"


def test_renew_with_proof_signed_by_another_key_fails(ra: RegistrationAuthority) -> None:
    _, issued, _ = bootstrap(ra)
    proof, csr = renew_request(ra, generate_key(), issued)
    with pytest.raises(Unauthorized) as e:
        ra.renew(proof, csr)
    assert e.value.code == "bad_proof"


def test_renew_proof_bound_to_its_csr(ra: RegistrationAuthority) -> None:
    key, issued, _ = bootstrap(ra)
    proof, _ = renew_request(ra, key, issued)
    other_csr = csr_pem(build_csr(generate_key(), SID))
    with pytest.raises(Unauthorized, match="different CSR"):
        ra.renew(proof, other_csr)


def test_renew_with_revoked_certificate_fails(ra: RegistrationAuthority) -> None:
    key, issued, _ = bootstrap(ra)
    ra.revoke(serial=issued.record.serial, reason="key-compromise")
    proof, csr = renew_request(ra, key, issued)
    with pytest.raises(Unauthorized) as e:
        ra.renew(proof, csr)
    assert e.value.code == "revoked_certificate"


def test_renew_with_expired_certificate_fails(ra: RegistrationAuthority) -> None:
    key, issued, _ = bootstrap(ra)
    clock(ra).advance(601)
    proof, csr = renew_request(ra, key, issued)
    with pytest.raises(Unauthorized) as e:
        ra.renew(proof, csr)
    assert e.value.code == "expired_certificate"


def test_renew_with_certificate_from_foreign_ca_fails(ra: RegistrationAuthority, tmp_path: Path) -> None:
    other = make_ca(tmp_path / "other")
    paths = CaPaths(other.dir)
    other_ra = RegistrationAuthority(Store(paths.store), Authority.load(paths, "zt.lab"), paths, FakeClock())
    key, issued, _ = bootstrap(other_ra)
    proof, csr = renew_request(ra, key, issued)
    with pytest.raises(Unauthorized) as e:
        ra.renew(proof, csr)
    assert e.value.code == "unknown_certificate"


def test_register_validates(ra: RegistrationAuthority) -> None:
    with pytest.raises(RequestRejected) as e:
        ra.register("../x")
    assert e.value.status == 400


def test_crl_is_due_rules() -> None:
    v = dt.timedelta(hours=1)
    assert is_crl_due(CrlState(0, 0, 0, 0), 100, v)
    assert not is_crl_due(CrlState(3, 100 + 3000, 2, 2), 100, v)
    assert is_crl_due(CrlState(3, 100 + 1700, 2, 2), 100, v)  # less than half left
    assert is_crl_due(CrlState(3, 100 + 3000, 2, 3), 100, v)  # a revocation is not yet covered


def test_crl_refresh_reissues_before_next_update_with_increasing_number(ra: RegistrationAuthority) -> None:
    first = x509.load_der_x509_crl(ra.paths.crl_der.read_bytes())
    assert refresh_crl_if_due(ra.store, ra.authority, ra.paths, ra.clock.now()) is None
    clock(ra).advance(31 * 60)
    published = refresh_crl_if_due(ra.store, ra.authority, ra.paths, ra.clock.now())
    assert published is not None
    second = x509.load_der_x509_crl(ra.paths.crl_der.read_bytes())
    n = [c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number for c in (first, second)]
    assert n[1] > n[0]
    assert second.next_update_utc is not None and first.next_update_utc is not None
    assert second.next_update_utc > first.next_update_utc
    assert second.is_signature_valid(ra.authority.certificate.public_key())  # type: ignore[arg-type]


def test_renew_proof_older_than_its_lifetime_is_refused(ra: RegistrationAuthority) -> None:
    key, issued, _ = bootstrap(ra)
    proof, csr = renew_request(ra, key, issued)
    clock(ra).advance(6 * 60)
    with pytest.raises(Unauthorized, match="expired; sign a fresh one"):
        ra.renew(proof, csr)


def test_renew_refused_when_an_ancestor_was_revoked_for_key_compromise(ra: RegistrationAuthority) -> None:
    """Even if a descendant escaped the cascade (e.g. recorded by an older RA), the renewal
    chain is walked under the lock: nothing renewed from a compromised key renews again."""
    key_a, a, _ = bootstrap(ra)
    key_b = generate_key()
    b = ra.renew(*renew_request(ra, key_a, a, key_b))
    with ra.store.write() as c:  # revoke A alone, as a schema-1 RA would have
        ra.store.revoke(c, a.record.serial, ra.clock.now().timestamp(), "key-compromise")
    assert not ra.store.certificate(b.record.serial).revoked  # type: ignore[union-attr]
    with pytest.raises(Unauthorized) as e:
        ra.renew(*renew_request(ra, key_b, b))
    assert e.value.code == "revoked_certificate"
    assert f"renewed from {a.record.serial}, revoked for key compromise" in e.value.reason


def test_revoked_identity_cannot_issue_renew_or_admin_issue(ra: RegistrationAuthority) -> None:
    key, issued, _ = bootstrap(ra)
    pending = ra.register("a").token
    done, _ = ra.revoke(service="a", reason="key-compromise")
    assert done == [issued.record.serial]
    with pytest.raises(Unauthorized) as e:
        ra.renew(*renew_request(ra, key, issued))
    assert e.value.code == "revoked_identity"
    with pytest.raises(Forbidden):
        ra.register("a")
    with pytest.raises(Unauthorized) as e:
        ra.issue(pending, csr_pem(build_csr(generate_key(), SID)))
    assert e.value.code == "revoked_identity"
    with pytest.raises(Forbidden) as e2:
        ra.issue_direct("a", build_csr(generate_key(), SID), None)
    assert e2.value.code == "revoked_identity"
    token = ra.register("a", reenable=True).token
    assert ra.issue(token, csr_pem(build_csr(generate_key(), SID))).record.identity == "a"
