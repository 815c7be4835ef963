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

from zt.agent.crl_fetch import MAX_CRL_BYTES, CrlFetcher, CrlRefused, state_from_file
from zt.agent.material import Material, build_csr, csr_pem, material_from_response, offered_bundle
from zt.agent.metrics import AgentMetrics, CrlView, IdentityView
from zt.agent.ra_client import RaClient
from zt.agent.rotation import DEFAULT_JITTER, DEFAULT_RENEW_FRACTION, MIN_RENEW_INTERVAL, renewal_time, retry_delay
from zt.agent.signals import Notifier
from zt.agent.trust import fingerprint, same_certificates, verify_svid
from zt.agent.writer import CertDirWriter, read_current
from zt.clock import Clock, rfc3339
from zt.errors import ConfigError, RemoteError, SvidError
from zt.logjson import log_event
from zt.pki.keys import KeyType, PrivateKey, generate_key
from zt.pki.renewal_proof import make_renewal_proof

log = logging.getLogger("zt.agent")


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
    crl_interval: float = 5.0
    fetch_crl: bool = True
    bootstrap_timeout: float = 300.0
    roots: tuple[x509.Certificate, ...] = ()  # the pinned trust bundle
    crl_max_bytes: int = MAX_CRL_BYTES
    service: str = ""  # the service name, for log events (the SPIFFE ID's last segment)


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
        self.current: Material | None = None
        self.received_at: dt.datetime | None = None
        self._crl: CrlFetcher | None = None
        # Set from signal handlers (SIGUSR1, SIGTERM), read by the loop: the loop sleeps on
        # `_wake` so a manual rotation or a stop is acted on at once, not at the next timer.
        self._wake = threading.Event()
        self._manual = threading.Event()

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
        """Make `m` the identity the agent holds (and the gauges describe)."""
        self.current = m
        self.metrics.identity = IdentityView(m.serial, m.not_before, m.not_after)

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
            self._adopt(existing)
            log_event(log, "identity_reused", serial=existing.serial, not_after=rfc3339(existing.not_after))
            return existing
        if self.cfg.token_file is None:
            raise ConfigError("no usable identity in the output directory and no --token-file to bootstrap with")
        try:
            token = self.cfg.token_file.read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read token file {self.cfg.token_file}: {e}") from e
        if not token:
            raise ConfigError(f"token file {self.cfg.token_file} is empty")
        key = generate_key(self.cfg.key_type)
        csr = build_csr(key, self.cfg.spiffe_id)
        failures = 0
        deadline = time.monotonic() + self.cfg.bootstrap_timeout
        while True:
            try:
                doc = self.ra.issue(token, csr_pem(csr), self.cfg.ttl_seconds)
                break
            except RemoteError as e:
                if not e.is_transient or time.monotonic() >= deadline:
                    raise
                failures += 1
                delay = min(2 ** min(failures, 5), 30, max(0.1, deadline - time.monotonic()))
                log_event(log, "bootstrap_retry", logging.WARNING, reason=str(e), retry_in=delay)
                if self.stop.wait(delay):
                    raise
        m = self._answer(key, doc)
        self._install(m, "bootstrap")
        return m

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
        )
        return m

    # -- CRL -----------------------------------------------------------------------------------

    def fetch_crl_once(self) -> bool:
        assert self.current is not None
        if self._crl is None:
            url = self.cfg.crl_url or crl_url_of(self.current.leaf)
            if url is None:
                return False
            issuers = self.current.intermediates + self.cfg.roots
            crl_file = self.cfg.out / "crl.pem"
            state = state_from_file(crl_file.read_bytes() if crl_file.is_file() else None, issuers)
            if state.number >= 0 and state.this_update is not None:
                log_event(log, "crl_state_loaded", crl_number=state.number, file=str(crl_file))
                self.metrics.crl = CrlView(state.number, state.this_update)
            self._crl = CrlFetcher(url, state, self.cfg.crl_max_bytes)
        try:
            fetched = self._crl.fetch(self.current.intermediates + self.cfg.roots, self.clock.now())
        except CrlRefused as e:
            self.metrics.crl_result("rejected")
            log_event(log, "crl_rejected", logging.WARNING, why=e.why, url=self._crl.url, reason=str(e), **e.fields)
            raise
        except RemoteError:
            self.metrics.crl_result("error")
            raise
        if fetched is None:
            self.metrics.crl_result("not_modified")
            return False
        try:
            self.writer.write_crl(fetched.pem)
        except OSError:
            self.metrics.crl_result("error")
            raise
        self.metrics.crl_result("updated")
        self.metrics.crl = CrlView(fetched.number, fetched.this_update)
        log_event(
            log, "crl_written", crl_number=fetched.number, entries=fetched.entries, next_update=fetched.next_update
        )
        self.notifier.notify("crl")
        return True

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
        """Renew and fetch until `stop` is set; returns the exit code."""
        assert self.current is not None
        next_renew = self._next_renewal(self.current)
        next_crl = self.clock.now()
        failures = 0
        while not self.stop.is_set():
            now = self.clock.now()
            manual = self._manual.is_set()
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
                    failures += 1
                    next_renew = now + retry_delay(now, self.current.not_after, failures)
                    level = logging.ERROR if now >= self.current.not_after else logging.WARNING
                    log_event(
                        log,
                        "renewal_failed",
                        level,
                        reason=str(e),
                        failures=failures,
                        retry_at=rfc3339(next_renew),
                        current_not_after=rfc3339(self.current.not_after),
                        trigger=trigger,
                    )
            if self.cfg.fetch_crl and now >= next_crl:
                try:
                    self.fetch_crl_once()
                except CrlRefused:
                    pass  # logged as crl_rejected; the last good crl.pem stays
                except RemoteError as e:
                    log_event(log, "crl_fetch_failed", logging.WARNING, reason=str(e))
                except OSError as e:
                    log_event(log, "crl_write_failed", logging.ERROR, reason=str(e))
                next_crl = now + dt.timedelta(seconds=self.cfg.crl_interval)
            wake = min(next_renew, next_crl) if self.cfg.fetch_crl else next_renew
            self._wake.wait(max(0.05, min((wake - self.clock.now()).total_seconds(), 60.0)))
            self._wake.clear()
        log_event(log, "stop", reason="signal", serial=self.current.serial)
        return 0

    def close(self) -> None:
        self.ra.close()
        if self._crl is not None:
            self._crl.close()
