"""Plan 3's action: a revocation while the CRL publisher is unreachable, probed until it lands.

At the middle of the fault (the publisher's edge down) the lab revokes a certificate of its own
(a client identity registered only for this, never the load's), as an operator would
(`ztca revoke`). From then until the end of the plan's slot it asks both services for /hello
with that certificate every half second, over a new connection each time: while the agents
cannot fetch the new CRL the services must still accept it (the fault held the revocation
back), and after the heal they must refuse it within a bound, and never accept it again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from zt.lab import mtls_client
from zt.lab.host_identities import LabError
from zt.lab.identity import LabIdentity
from zt.lab.runtime import RunningLab

PROBE_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Probe:
    service: str
    at: float
    accepted: bool  # a 200 with this certificate
    status: int | None  # the HTTP status when a response came (403: the policy refused the caller)
    error: str | None  # the client's error class when refused (tls_refused, ...)
    reason: str | None  # the TLS alert class (revoked, ...)


@dataclass
class RevocationWatch:
    lab: RunningLab
    victim: LabIdentity
    services: list[str]
    revoke_at: float  # wall clock
    until: float  # wall clock
    revoked_at: float | None = None
    revoke_error: str | None = None
    probes: list[Probe] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="revocation-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        if self._stop.wait(max(0.0, self.revoke_at - time.time())):
            return
        try:
            self.lab.revoke(serial=self.victim.serial)
            self.revoked_at = time.time()
        except LabError as e:
            self.revoke_error = str(e)
            return
        while time.time() < self.until and not self._stop.is_set():
            for s in self.services:
                r = mtls_client.get(
                    self.lab.service_url(s) + "/hello", bundle=self.lab.bundle(), identity=self.victim, timeout=3
                )
                self.probes.append(Probe(s, time.time(), r.ok and r.status == 200, r.status, r.error, r.reason))
            self._stop.wait(PROBE_INTERVAL_S)
