"""Both real services (service-a in C++, service-b in Java) on one CA, with the identities a
module's tests present: the set-up every cross-language module shares.

Started once per module (a module-scoped fixture): `make test` distributes tests/ by file
(--dist loadfile, docs/ci.md), so every test of a module runs in the worker that started its
pair.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import CaDir, make_ca
from zt.lab import metrics_scrape, mtls_client
from zt.lab.identity import LabIdentity
from zt.lab.services import RunningService, start_service, wait_ready

TD = "spiffe://zt.lab/svc/"
KINDS = ["service-a", "service-b"]


def other_service(kind: str) -> str:
    """Each service expects the other as the peer of its outbound `/call`."""
    return TD + ("service-b" if kind == "service-a" else "service-a")


@dataclass
class Pair:
    ca: CaDir
    services: dict[str, RunningService]
    ids: dict[str, LabIdentity]
    tmp: Path

    def identity(self, name: str, *extra: str) -> LabIdentity:
        if name not in self.ids:
            self.ca.register(name)
            out = self.tmp / "ids" / name
            r = self.ca.ztca("issue", name, "--out", str(out), *extra)
            assert r.code == 0, r.err
            self.ids[name] = LabIdentity(name, TD + name, out)
        return self.ids[name]

    def get(self, service: str, path: str, identity: LabIdentity | None) -> mtls_client.Response:
        return mtls_client.get(self.services[service].url + path, bundle=self.ca.paths.bundle, identity=identity)

    def failures(self, service: str, reason: str) -> float:
        return metrics_scrape.value(
            metrics_scrape.scrape(self.services[service].metrics_url), "mtls_handshake_failures_total", reason=reason
        )

    def stop(self) -> None:
        for svc in self.services.values():
            svc.proc.stop()


def start_pair(
    tmp: Path,
    callers: Iterable[str] = ("client",),
    *,
    expect_peer: Callable[[str], str] = other_service,
    extra: tuple[str, ...] = (),
) -> Pair:
    """Both services up and answering `callers[0]`; stopped again if either fails to start."""
    callers = list(callers)
    p = Pair(make_ca(tmp), {}, {}, tmp)
    for name in (*KINDS, *callers):
        p.identity(name)
    try:
        for kind in KINDS:
            p.services[kind] = start_service(
                kind, kind, p.ids[kind].cert_dir, tmp, expect_peer=expect_peer(kind), extra=extra
            )
        for svc in p.services.values():
            wait_ready(svc, p.ca.paths.bundle, p.ids[callers[0]])
    except BaseException:
        p.stop()
        raise
    return p


@contextmanager
def running_pair(
    tmp: Path,
    callers: Iterable[str] = ("client",),
    *,
    expect_peer: Callable[[str], str] = other_service,
    extra: tuple[str, ...] = (),
) -> Iterator[Pair]:
    p = start_pair(tmp, callers, expect_peer=expect_peer, extra=extra)
    try:
        yield p
    finally:
        p.stop()
