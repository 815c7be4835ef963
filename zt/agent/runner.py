"""The agent's work: bootstrap once with the token, then renew and fetch CRLs until stopped.

Long-running loops log, count and continue: a failed renewal is retried with backoff while
the current certificate keeps being served; a failed CRL fetch leaves the last good CRL in
place. Only a bootstrap that can never succeed (token refused, RA not trusted, an answer that
does not verify) ends the agent.

Trust comes from the pinned bundle only (`cfg.roots`): every answer's chain is verified against
it, and it is the bundle written. An RA answer carrying another bundle is logged
(`ra_bundle_ignored`) and issuance goes on with the pinned one. The operator changes trust by
giving the agent a new `--bundle` (and `--bundle-sha256`) and restarting it: on start, the
identity on disk is reused only if it verifies against the new bundle, and is rewritten as a new
generation carrying the new `bundle.pem` (`bundle_updated`); otherwise the agent bootstraps.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zt.agent.crl_fetch import MAX_CRL_BYTES, CrlFetcher, CrlRefused, next_fetch_delay, state_from_file
from zt.agent.material import Material, build_csr, csr_pem, material_from_response, offered_bundle
from zt.agent.metrics import AgentMetrics, CrlView, IdentityView
from zt.agent.ra_client import RaClient
from zt.agent.rotation import DEFAULT_JITTER, DEFAULT_RENEW_FRACTION, MIN_RENEW_INTERVAL, renewal_time, retry_delay
from zt.agent.signals import Notifier
from zt.agent.token_watch import TokenWatch, read_token
from zt.agent.trust import fingerprint, same_certificates, verify_svid
from zt.agent.writer import CertDirWriter, current_has_bundle_checksum, read_current
from zt.clock import Clock, rfc3339
from zt.errors import ConfigError, RemoteError, SvidError
from zt.logjson import log_event
from zt.pki.keys import KeyType, PrivateKey, generate_key
from zt.pki.renewal_proof import make_renewal_proof

log = logging.getLogger("zt.agent")

# The RA's answers to a renewal whose certificate (or identity) is revoked (zt/ra/authorize.py):
# renewing again cannot help, only a new token can.
REVOKED_CODES = frozenset({"revoked_certificate", "revoked_identity"})


@dataclass(frozen=True)
class AgentConfig:
    spiffe_id: str
    out: Path
    token_file: Path | None
    key_type: KeyType = KeyType.EC_P256
    ttl_seconds: int | None = None
    renew_fraction: float = DEFAULT_RENEW_FRACTION
    jitter: float = DEFAULT_JITTER
    crl_url: str | None = None
    crl_interval: float = 60.0  # the periodic fallback: after an error, a rejection or an early 304
    crl_wait: float = 30.0  # long-poll: the publisher may hold a request this long (0: no long-poll)
    token_poll: float = 1.0  # while revoked: how often the token file is looked at
    fetch_crl: bool = True
    bootstrap_timeout: float = 300.0
    roots: tuple[x509.Certificate, ...] = ()  # the pinned trust bundle
    crl_max_bytes: int = MAX_CRL_BYTES
    service: str = ""  # the service name, for log events (the SPIFFE ID's last segment)
    # A deliberately weakened agent, for the chaos lab's negative test only (docs/chaos.md):
    # after a failed renewal the next attempt is at the certificate's expiry, never sooner.
    renewal_retry: bool = True


def crl_url_of(leaf: x509.Certificate) -> str | None:
    try:
        cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return None
    for point in cdp:
        for name in point.full_name or []:
            if isinstance(name, x509.UniformResourceIdentifier):
                return name.value
    return None


class Agent:
    def __init__(
        self,
        cfg: AgentConfig,
        ra: RaClient,
        notifier: Notifier,
        clock: Clock,
        stop: threading.Event | None = None,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.ra = ra
        self.notifier = notifier
        self.clock = clock
        self.stop = stop or threading.Event()
        self.metrics = metrics or AgentMetrics(clock)
        self.writer = CertDirWriter(cfg.out)
        if self.writer.swept:  # a generation a kill cut short (zt.agent.writer.sweep_torn)
            log_event(log, "torn_generations_removed", logging.WARNING, generations=self.writer.swept)
        self.current: Material | None = None
        self.received_at: dt.datetime | None = None
        self._crl: CrlFetcher | None = None
        # Set from signal handlers (SIGUSR1, SIGTERM), read by the loop: the loop sleeps on
        # `_wake` so a manual rotation or a stop is acted on at once, not at the next timer.
        self._wake = threading.Event()
        self._manual = threading.Event()
        self._tokens = TokenWatch(cfg.token_file) if cfg.token_file else None
        # The serial of our own certificate once a CRL lists it (set by the CRL thread, acted
        # on by the renewal loop): no renewal with it; a new token brings a new identity.
        self._revoked_serial: str | None = None
        self._crl_thread: threading.Thread | None = None
        self._no_crl_url_logged = False

    @property
    def service(self) -> str:
        return self.cfg.service or self.cfg.spiffe_id.rsplit("/", 1)[-1]

    def request_rotation(self) -> None:
        """Renew now (SIGUSR1): safe to call from a signal handler or another thread."""
        self._manual.set()
        self._wake.set()

    def request_stop(self) -> None:
        self.stop.set()
        self._wake.set()

    # -- identity ------------------------------------------------------------------------------

    def _adopt(self, m: Material) -> None:
        """Make `m` the identity the agent holds (and the gauges describe). `identity_revoked`
        describes the identity held, so a new one starts unrevoked unless the newest CRL we
        hold already lists it."""
        self.current = m
        self.metrics.identity = IdentityView(m.serial, m.not_before, m.not_after)
        if self._revoked_serial != m.serial:
            self._revoked_serial = None
            self.metrics.revoked = False
        if self._crl is not None:
            self._check_own_revocation(self._crl.state.revoked, self._crl.state.number)

    def _install(self, m: Material, why: str) -> str:
        old = self.current.serial if self.current else None
        gen = self.writer.write(m)
        self._adopt(m)
        self.received_at = self.clock.now()
        log_event(
            log,
            "identity_written",
            spiffe_id=m.spiffe_id,
            serial=m.serial,
            old_serial=old,
            not_after=rfc3339(m.not_after),
            generation=gen,
            why=why,
            ra=self.ra.answered_by if why in ("bootstrap", "renewal") else None,  # which replica
        )
        self.notifier.notify(why)
        return gen

    def _usable(self, m: Material | None) -> bool:
        """An identity on disk is reused only if it is ours, current, and verifies against the
        pinned bundle (which may have changed since it was written)."""
        if m is None or m.spiffe_id != self.cfg.spiffe_id:
            return False
        if not m.not_before - dt.timedelta(seconds=60) <= self.clock.now() < m.not_after:
            return False
        try:
            verify_svid(m.key, m.chain, self.cfg.roots, self.cfg.spiffe_id)
        except SvidError as e:
            log_event(log, "identity_not_reusable", logging.WARNING, serial=m.serial, reason=str(e))
            return False
        return True

    def _answer(self, key: PrivateKey, doc: dict[str, object]) -> Material:
        """The material in an RA answer, verified against the pinned bundle; the RA's bundle is
        compared with the pinned one and never written."""
        chain, bundle = doc.get("chain"), doc.get("bundle")
        if not isinstance(chain, str) or not isinstance(bundle, str):
            raise RemoteError("RA answered without a chain or bundle", permanent=True)
        m = material_from_response(key, chain, bundle, self.cfg.spiffe_id, roots=self.cfg.roots)
        offered = offered_bundle(bundle)
        if not same_certificates(offered, self.cfg.roots):
            log_event(
                log,
                "ra_bundle_ignored",
                logging.WARNING,
                reason="the RA sent a bundle that differs from the pinned one; writing the pinned one",
                offered=sorted(fingerprint(c) for c in offered),
                pinned=sorted(fingerprint(c) for c in self.cfg.roots),
            )
        return m

    def bootstrap(self) -> Material:
        """Reuse a valid identity already on disk (agent restart), else spend the token."""
        existing = read_current(self.cfg.out)
        if existing is not None and self._usable(existing):
            if not same_certificates(existing.bundle, self.cfg.roots):
                updated = Material(
                    existing.key, existing.leaf, existing.intermediates, self.cfg.roots, existing.spiffe_id
                )
                log_event(
                    log,
                    "bundle_updated",
                    old=sorted(fingerprint(c) for c in existing.bundle),
                    new=sorted(fingerprint(c) for c in self.cfg.roots),
                )
                self._install(updated, "bundle")
                return updated
            if not current_has_bundle_checksum(self.cfg.out):
                # Written before generations carried bundle.pem.sha256 (CONTRACT B): the same
                # identity again, as a new generation with the checksum, so readers can check it.
                log_event(log, "bundle_checksum_added", serial=existing.serial)
                self._install(existing, "bundle")
                return existing
            self._adopt(existing)
            log_event(log, "identity_reused", serial=existing.serial, not_after=rfc3339(existing.not_after))
            return existing
        if self.cfg.token_file is None:
            raise ConfigError("no usable identity in the output directory and no --token-file to bootstrap with")
        token = read_token(self.cfg.token_file)
        m = self._spend_token(token, self.cfg.bootstrap_timeout)
        self._install(m, "bootstrap")
        return m

    def _spend_token(self, token: str, timeout: float) -> Material:
        """A new key, and the identity the RA issues for it with `token`; transient failures
        are retried for `timeout` seconds (0: one attempt). The token counts as used once the
        RA answered, whatever the answer: it is never sent twice."""
        key = generate_key(self.cfg.key_type)
        csr = build_csr(key, self.cfg.spiffe_id)
        failures = 0
        deadline = time.monotonic() + timeout
        while True:
            try:
                doc = self.ra.issue(token, csr_pem(csr), self.cfg.ttl_seconds)
                break
            except RemoteError as e:
                if not e.is_transient and self._tokens is not None:
                    self._tokens.mark_used(token)
                if not e.is_transient or time.monotonic() >= deadline:
                    raise
                failures += 1
                # The RA's Retry-After (rate limit, lockout) wins over our own backoff.
                wanted = max(min(2 ** min(failures, 5), 30), e.retry_after or 0.0)
                delay = min(max(wanted, 0.1), max(0.1, deadline - time.monotonic()))
                log_event(log, "bootstrap_retry", logging.WARNING, reason=str(e), retry_in=delay)
                if self.stop.wait(delay):
                    raise
        if self._tokens is not None:
            self._tokens.mark_used(token)
        return self._answer(key, doc)

    def renew_once(self, trigger: str = "schedule") -> Material:
        """Renew with proof of the current certificate and write the new generation; logs the
        `rotation` event (docs/contracts.md) and counts success. Raises on failure (the caller
        counts it and schedules the retry): the current generation stays in place."""
        assert self.current is not None
        cur = self.current
        started = time.monotonic()
        key = generate_key(self.cfg.key_type)  # a new key every rotation
        csr = build_csr(key, self.cfg.spiffe_id)
        proof = make_renewal_proof(
            cur.key, cur.chain, cur.spiffe_id, csr.public_bytes(serialization.Encoding.DER), self.clock.now()
        )
        doc = self.ra.renew(proof, csr_pem(csr), self.cfg.ttl_seconds)
        m = self._answer(key, doc)
        gen = self._install(m, "renewal")
        self.metrics.rotation_success.inc()
        log_event(
            log,
            "rotation",
            service=self.service,
            old_serial=cur.serial,
            new_serial=m.serial,
            not_after=rfc3339(m.not_after),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            trigger=trigger,
            generation=gen,
            ra=self.ra.answered_by,
        )
        return m

    # -- CRL -----------------------------------------------------------------------------------

    def fetch_crl_once(self, wait: float = 0.0) -> str:
        """One CRL request (a long-poll when `wait` > 0 and we hold an ETag); verifies, writes,
        notifies. Returns the `crl_fetch_total` result, which it has counted and logged (or
        `no_url` when there is nothing to fetch from): a failed or rejected fetch never raises,
        the last good `crl.pem` stays."""
        assert self.current is not None
        if self._crl is None:
            url = self.cfg.crl_url or crl_url_of(self.current.leaf)
            if url is None:
                if not self._no_crl_url_logged:
                    self._no_crl_url_logged = True
                    log_event(log, "crl_no_url", logging.WARNING, reason="no --crl-url and no CRL DP in our leaf")
                return "no_url"  # not a fetch: not counted; the thread looks again every --crl-interval
            issuers = self.current.intermediates + self.cfg.roots
            crl_file = self.cfg.out / "crl.pem"
            state = state_from_file(crl_file.read_bytes() if crl_file.is_file() else None, issuers)
            if state.number >= 0 and state.this_update is not None:
                log_event(log, "crl_state_loaded", crl_number=state.number, file=str(crl_file))
                self.metrics.crl = CrlView(state.number, state.this_update)
                self._check_own_revocation(state.revoked, state.number)
            self._crl = CrlFetcher(url, state, self.cfg.crl_max_bytes)
        result = self._fetch_and_write(self._crl, wait)
        self.metrics.crl_result(result)
        return result

    def _fetch_and_write(self, fetcher: CrlFetcher, wait: float) -> str:
        assert self.current is not None
        try:
            fetched = fetcher.fetch(self.current.intermediates + self.cfg.roots, self.clock.now(), wait)
        except CrlRefused as e:
            log_event(log, "crl_rejected", logging.WARNING, why=e.why, url=fetcher.url, reason=str(e), **e.fields)
            return "rejected"
        except RemoteError as e:
            log_event(log, "crl_fetch_failed", logging.WARNING, url=fetcher.url, reason=str(e))
            return "error"
        if fetched is None:
            return "not_modified"
        try:
            self.writer.write_crl(fetched.pem)
        except OSError as e:
            log_event(log, "crl_write_failed", logging.ERROR, reason=str(e))
            return "error"
        self.metrics.crl = CrlView(fetched.number, fetched.this_update)
        log_event(
            log, "crl_written", crl_number=fetched.number, entries=fetched.entries, next_update=fetched.next_update
        )
        self.notifier.notify("crl")
        self._check_own_revocation(fetched.revoked, fetched.number)
        return "updated"

    def _check_own_revocation(self, revoked: frozenset[int], crl_number: int) -> None:
        """Our own serial on the CRL: say so once, raise the gauge, stop renewing (the loop
        waits for a new token instead)."""
        cur = self.current
        if cur is not None and cur.leaf.serial_number in revoked:
            self._mark_revoked(cur, "crl", crl_number=crl_number)

    def _mark_revoked(self, cur: Material, source: str, **fields: object) -> None:
        if self._revoked_serial == cur.serial:
            return
        self._revoked_serial = cur.serial
        self.metrics.revoked = True
        log_event(
            log,
            "identity_revoked",
            logging.ERROR,
            service=self.service,
            serial=cur.serial,
            source=source,
            **fields,
            action="renewal stopped; waiting for a new token in the token file"
            if self._tokens
            else "renewal stopped; no --token-file to bootstrap again with",
        )
        self._wake.set()

    def _crl_loop(self) -> None:
        """The CRL thread: long-poll the publisher, fall back to `crl_interval` (see
        `next_fetch_delay`); one failure never ends it."""
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                result = self.fetch_crl_once(self.cfg.crl_wait)
            except Exception as e:  # noqa: BLE001 - log, count and continue: the loop must not die
                log_event(log, "crl_loop_error", logging.ERROR, reason=f"{type(e).__name__}: {e}")
                self.metrics.crl_result("error")
                result = "error"
            asked = self._crl.asked_wait if self._crl is not None else 0
            delay = next_fetch_delay(result, asked, time.monotonic() - started, self.cfg.crl_interval)
            if delay > 0:
                self.stop.wait(delay)

    def start_crl_thread(self) -> None:
        if self.cfg.fetch_crl and self._crl_thread is None:
            self._crl_thread = threading.Thread(target=self._crl_loop, name="agent-crl", daemon=True)
            self._crl_thread.start()

    # -- revoked: wait for a new token -----------------------------------------------------

    def _rebootstrap_if_new_token(self) -> Material | None:
        """While revoked: bootstrap again with a new key once the token file holds a token not
        used yet. The current generation stays in place until the new one is written."""
        if self._tokens is None:
            return None
        token = self._tokens.fresh_token()
        if token is None:
            return None
        old = self.current.serial if self.current else None
        try:
            m = self._spend_token(token, 0.0)
        except RemoteError as e:
            if e.is_transient:
                self._tokens.retry_later()
            log_event(log, "bootstrap_failed", logging.WARNING, reason=str(e), remote=True, transient=e.is_transient)
            return None
        gen = self._install(m, "bootstrap")
        log_event(
            log, "bootstrap", service=self.service, serial=m.serial, old_serial=old, generation=gen, reason="revoked"
        )
        return m

    # -- the loop ------------------------------------------------------------------------------

    def _next_renewal(self, m: Material) -> dt.datetime:
        """Schedule from when the lifetime really started for us: backdating must not shorten it."""
        start = max(m.not_before, self.received_at) if self.received_at else m.not_before
        at = max(
            renewal_time(start, m.not_after, self.cfg.renew_fraction, self.cfg.jitter),
            self.clock.now() + MIN_RENEW_INTERVAL,
        )
        lifetime = (m.not_after - start).total_seconds()
        log_event(
            log,
            "renewal_scheduled",
            at=rfc3339(at),
            serial=m.serial,
            in_seconds=round((at - self.clock.now()).total_seconds(), 3),
            fraction=round((at - start).total_seconds() / lifetime, 4) if lifetime > 0 else None,
        )
        return at

    def run(self) -> int:
        """Renew until `stop` is set (CRLs are fetched on their own thread); the exit code.

        Renewal happens at the scheduled time or at once on `request_rotation` (SIGUSR1). While
        our own certificate is revoked there is no renewal: the loop polls the token file every
        `token_poll` seconds and bootstraps again when it holds a new token.
        """
        assert self.current is not None
        self.start_crl_thread()
        next_renew = self._next_renewal(self.current)
        failures = 0
        while not self.stop.is_set():
            now = self.clock.now()
            manual = self._manual.is_set()
            if self._revoked_serial is not None and self._revoked_serial == self.current.serial:
                if manual:
                    self._manual.clear()
                    log_event(
                        log,
                        "rotation_refused",
                        logging.WARNING,
                        trigger="manual",
                        reason="identity_revoked",
                        serial=self.current.serial,
                    )
                m = self._rebootstrap_if_new_token()
                if m is not None:
                    failures = 0
                    next_renew = self._next_renewal(m)
                    continue
                self._wake.wait(self.cfg.token_poll)
                self._wake.clear()
                continue
            if manual or now >= next_renew:
                self._manual.clear()
                trigger = "manual" if manual else "schedule"
                if manual:
                    log_event(log, "rotation_requested", trigger=trigger, serial=self.current.serial)
                try:
                    m = self.renew_once(trigger)
                    failures = 0
                    next_renew = self._next_renewal(m)
                except (RemoteError, ConfigError) as e:
                    self.metrics.rotation_failure.inc()
                    if isinstance(e, RemoteError) and e.code in REVOKED_CODES:
                        # The RA knows before the CRL reaches us (or the publisher is down).
                        self._mark_revoked(self.current, "ra", ra_code=e.code)
                    failures += 1
                    if self.cfg.renewal_retry:
                        delay = retry_delay(now, self.current.not_after, failures)
                        if isinstance(e, RemoteError) and e.retry_after is not None:
                            # Asking before the RA's Retry-After would only be refused again.
                            delay = max(delay, dt.timedelta(seconds=e.retry_after))
                        next_renew = now + delay
                    else:  # the weakened agent: no retry while the certificate is still valid
                        next_renew = max(now, self.current.not_after) + MIN_RENEW_INTERVAL
                    level = logging.ERROR if now >= self.current.not_after else logging.WARNING
                    log_event(
                        log,
                        "renewal_failed",
                        level,
                        reason=str(e),
                        failures=failures,
                        retry_at=rfc3339(next_renew),
                        retry_after=e.retry_after if isinstance(e, RemoteError) else None,
                        current_not_after=rfc3339(self.current.not_after),
                        trigger=trigger,
                    )
            self._wake.wait(max(0.05, min((next_renew - self.clock.now()).total_seconds(), 60.0)))
            self._wake.clear()
        log_event(log, "stop", reason="signal", serial=self.current.serial)
        return 0

    def close(self) -> None:
        """Stop the CRL thread (briefly: a held long-poll is not waited for; the thread is a
        daemon) and close the HTTP clients it is not using."""
        self.request_stop()
        if self._crl_thread is not None:
            self._crl_thread.join(timeout=0.5)
        self.ra.close()
        if self._crl is not None and (self._crl_thread is None or not self._crl_thread.is_alive()):
            self._crl.close()
