"""Revocations and the CRL file: recording them and keeping the published CRL current.

Design (see docs/architecture.md): the store is the source of truth. Whoever holds the
intermediate key (the RA, `ztca`) re-issues the CRL into `<ca>/crl/crl.der` and `crl.pem`:
- at once after every revocation, in the same write transaction that records it;
- and whenever the current CRL has used up half its validity, or the store's revocation
  revision is newer than the one the CRL covers (a writer died between the two).
Because the CRL number is taken and the files are replaced while the store's write lock is
held, two writers (several RA workers, `ztca`) can never publish out of order. The publisher
(`zt-crl`) only reads the files: it needs no key.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zt.ca.authority import Authority
from zt.ca.crl import RevokedEntry, sign_crl
from zt.ca.layout import CaPaths
from zt.errors import InvalidValue, NotFound
from zt.fsutil import write_atomic
from zt.ra.store_api import KEY_COMPROMISE, Conn, StateStore

DEFAULT_CRL_VALIDITY = dt.timedelta(hours=1)
# meta key of the latest CRL (DER, base64) in a store shared by replicas (sync_crl_file).
CRL_DER_META = "crl_der_b64"
# thisUpdate is set this far back so that a relying party whose clock is a little behind ours
# does not see a CRL issued "in the future" (OpenSSL: CRL is not yet valid). sign_crl raises it
# to the latest revocation date in the CRL (RFC 5280 5.1.2.4, 5.1.2.6; see _publish_locked).
THIS_UPDATE_BACKDATE = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class CrlState:
    number: int
    next_update: float
    covered_revision: int
    revision: int


@dataclass(frozen=True)
class PublishedCrl:
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int


def crl_validity(store: StateStore, conn: Conn | None = None) -> dt.timedelta:
    raw = store.meta("crl_validity_seconds", conn)
    return dt.timedelta(seconds=float(raw)) if raw else DEFAULT_CRL_VALIDITY


def crl_state(store: StateStore, conn: Conn | None = None) -> CrlState:
    def num(key: str) -> int:
        raw = store.meta(key, conn)
        return int(float(raw)) if raw else 0

    return CrlState(
        number=num("crl_number"),
        next_update=float(store.meta("crl_next_update", conn) or 0),
        covered_revision=num("crl_revision"),
        revision=num("revocation_revision"),
    )


def is_crl_due(state: CrlState, now: float, validity: dt.timedelta) -> bool:
    """Re-issue when half the validity is used (never let it lapse) or revocations are newer."""
    if state.number == 0 or state.revision != state.covered_revision:
        return True
    return state.next_update - now <= validity.total_seconds() / 2


def _publish_locked(
    conn: Conn, store: StateStore, authority: Authority, paths: CaPaths, now: dt.datetime
) -> PublishedCrl:
    """Sign and write the next CRL: every unexpired revocation, thisUpdate and nextUpdate.

    thisUpdate is `now - THIS_UPDATE_BACKDATE`, unless a listed revocation is later: then it is
    that revocation's date (zt.ca.crl.effective_this_update). So a CRL published at a revocation
    has thisUpdate = the revocation's date (about now), and no entry is ever dated after the
    CRL that lists it, which is what RFC 5280 means by thisUpdate (the issue date, 5.1.2.4) and
    revocationDate (when the revocation occurred, 5.1.2.6). We keep the revocation date true
    rather than backdating it too: it is the fact relying parties and audits read. That CRL
    loses the clock-skew margin, which is acceptable: the agents and service-a accept a
    thisUpdate up to five minutes ahead (docs/contracts.md, "CRLs only move forward";
    crl_index.cc), and the next re-issue, at half the validity, has the margin again.
    """
    state = crl_state(store, conn)
    validity = crl_validity(store, conn)
    number = state.number + 1
    revoked = StateStore.revoked_unexpired(conn, now.timestamp())
    entries = [
        RevokedEntry(int(r.serial, 16), dt.datetime.fromtimestamp(r.revoked_at or 0, dt.UTC), r.revocation_reason)
        for r in revoked
    ]
    entries += [
        RevokedEntry(int(serial, 16), dt.datetime.fromtimestamp(at, dt.UTC))
        for serial, at in StateStore.bench_revocations(conn, now.timestamp())
    ]
    next_update = now + validity
    crl = sign_crl(authority, entries, number, now - THIS_UPDATE_BACKDATE, next_update)
    paths.crl_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(paths.crl_der, crl.public_bytes(serialization.Encoding.DER))
    write_atomic(paths.crl_pem, crl.public_bytes(serialization.Encoding.PEM))
    if store.shared_by_replicas:  # the other replicas copy it from here (sync_crl_file)
        StateStore.set_meta(conn, CRL_DER_META, base64.b64encode(crl.public_bytes(serialization.Encoding.DER)).decode())
    StateStore.set_meta(conn, "crl_number", str(number))
    StateStore.set_meta(conn, "crl_next_update", str(next_update.timestamp()))
    StateStore.set_meta(conn, "crl_revision", str(state.revision))
    return PublishedCrl(number, crl.last_update_utc, next_update, len(entries))


def publish_crl(store: StateStore, authority: Authority, paths: CaPaths, now: dt.datetime) -> PublishedCrl:
    """Re-issue the CRL now, whatever its state."""
    with store.write() as conn:
        return _publish_locked(conn, store, authority, paths, now)


def _crl_number(der: bytes) -> int:
    crl = x509.load_der_x509_crl(der)
    return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)


def sync_crl_file(store: StateStore, paths: CaPaths) -> int | None:
    """Bring this host's CRL files up to the latest CRL in a store shared by replicas; the
    number written, or None when the files were current (or the store is not shared).

    With RA replicas on several hosts, only the replica that took the write lock re-issued the
    CRL and wrote its own files; every other replica copies the CRL from the store here, at each
    refresher tick (zt-ra --crl-check-interval), so the zt-crl beside each replica serves the
    latest one within that interval (docs/scaling.md). A CRL is only ever replaced by a higher
    number, the rule the agents and services apply too.
    """
    if not store.shared_by_replicas:
        return None
    encoded = store.meta(CRL_DER_META)
    if not encoded:
        return None
    der = base64.b64decode(encoded)
    number = _crl_number(der)
    try:
        local = _crl_number(paths.crl_der.read_bytes())
    except (OSError, ValueError):
        local = -1
    if local >= number:
        return None
    paths.crl_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(paths.crl_der, der)
    write_atomic(paths.crl_pem, x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM))
    return number


def refresh_crl_if_due(
    store: StateStore, authority: Authority, paths: CaPaths, now: dt.datetime
) -> PublishedCrl | None:
    """Re-issue if due; the check is repeated under the lock so concurrent workers issue once.
    First, bring this host's CRL files up to the store's (sync_crl_file)."""
    sync_crl_file(store, paths)
    if not is_crl_due(crl_state(store), now.timestamp(), crl_validity(store)):
        return None
    with store.write() as conn:
        if not is_crl_due(crl_state(store, conn), now.timestamp(), crl_validity(store, conn)):
            return None
        return _publish_locked(conn, store, authority, paths, now)


def _bump_revision(conn: Conn, store: StateStore) -> None:
    rev = int(store.meta("revocation_revision", conn) or 0) + 1
    StateStore.set_meta(conn, "revocation_revision", str(rev))


def _revoke_locked(conn: Conn, serials: list[str], now: dt.datetime, reason: str | None, actor: str) -> list[str]:
    """Revoke under the caller's lock; a key-compromise revocation also revokes every certificate
    renewed from the compromised key (whoever held it could have asked for those)."""
    done: list[str] = []
    for s in serials:
        if StateStore.revoke(conn, s, now.timestamp(), reason):
            done.append(s)
            StateStore.audit(conn, now.timestamp(), actor, "revoke", s, "ok", reason)
        if reason == KEY_COMPROMISE:
            for child in StateStore.live_descendants(conn, s):
                if StateStore.revoke(conn, child, now.timestamp(), reason):
                    done.append(child)
                    StateStore.audit(conn, now.timestamp(), actor, "revoke", child, "ok", f"{reason}: renewed from {s}")
    return done


def revoke_and_publish(
    store: StateStore,
    authority: Authority,
    paths: CaPaths,
    now: dt.datetime,
    *,
    serials: list[str],
    reason: str | None,
    actor: str,
) -> tuple[list[str], PublishedCrl]:
    """Revoke the given serials (unknown or already revoked ones are skipped) and publish."""
    with store.write() as conn:
        done = _revoke_locked(conn, serials, now, reason, actor)
        if done:
            _bump_revision(conn, store)
        published = _publish_locked(conn, store, authority, paths, now)
    return done, published


def revoke_identity_and_publish(
    store: StateStore,
    authority: Authority,
    paths: CaPaths,
    now: dt.datetime,
    *,
    service: str,
    reason: str | None,
    actor: str,
) -> tuple[list[str], PublishedCrl]:
    """Revoke a whole service in one transaction under the write lock.

    The identity is marked revoked at `now`, every live certificate of it is revoked, its unused
    bootstrap tokens are voided, and the CRL is published, all before the lock is released.
    Issue and renew check the identity's state under the same lock before they record
    anything, so no certificate signed while this runs can be recorded afterwards: a service
    revoked here ends with zero live certificates, whatever was in flight.
    """
    with store.write() as conn:
        ident = store.identity(service, conn)
        if ident is None:
            raise NotFound(f"service {service!r} is not registered", code="unknown_service")
        StateStore.revoke_identity(conn, service, now.timestamp(), reason)
        serials = StateStore.unexpired_serials(conn, service, ident.spiffe_id, now.timestamp())
        done = _revoke_locked(conn, serials, now, reason, actor)
        voided = StateStore.void_tokens(conn, service, now.timestamp())
        StateStore.audit(
            conn,
            now.timestamp(),
            actor,
            "revoke-identity",
            ident.spiffe_id,
            "ok",
            f"{reason or 'no reason'}; {len(done)} certificate(s), {voided} token(s) voided",
        )
        _bump_revision(conn, store)
        published = _publish_locked(conn, store, authority, paths, now)
    return done, published


def bench_revoke_and_publish(
    store: StateStore, authority: Authority, paths: CaPaths, now: dt.datetime, *, entries: int, lifetime: dt.timedelta
) -> tuple[int, PublishedCrl]:
    """Benchmarks and the lab: revoke `entries` random serials that no certificate ever had, in
    one transaction, and publish the CRL that lists them (with every real revocation).

    They stay on every CRL for `lifetime`, as a revoked certificate stays until its notAfter
    (RFC 5280 3.3). Serials are 159-bit random numbers, as the CA draws its own (RFC 5280
    4.1.2.2: positive, at most 20 octets), so they never name a real certificate.
    """
    if entries < 1:
        raise InvalidValue("the number of entries must be at least 1")
    serials = [format(x509.random_serial_number(), "x") for _ in range(entries)]
    with store.write() as conn:
        added = StateStore.add_bench_revocations(conn, serials, now.timestamp(), (now + lifetime).timestamp())
        StateStore.audit(conn, now.timestamp(), "ztca", "bench-crl", None, "ok", f"{added} synthetic revocation(s)")
        _bump_revision(conn, store)
        published = _publish_locked(conn, store, authority, paths, now)
    return added, published
