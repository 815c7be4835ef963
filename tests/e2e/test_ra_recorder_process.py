"""zt-ra's recorder process (zt.ra.commit_server) as part of the real RA: killed with SIGKILL in
the middle of issuing, it is started again and nothing answered is lost; and it never outlives
zt-ra."""

from __future__ import annotations

import gc
import os
import signal
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import CaDir, RaServer, start_ra
from zt.agent.material import build_csr, csr_pem
from zt.lab.process import wait_until
from zt.pki.keys import generate_key
from zt.ra.commit_server import PROCESS_NAME


def csr_for(service: str) -> str:
    return csr_pem(build_csr(generate_key(), f"spiffe://zt.lab/svc/{service}"))


def recorder_pids(parent: int) -> list[int]:
    """The recorder processes among `parent`'s children (it names itself: /proc/<pid>/comm)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm == PROCESS_NAME and int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(entry.name))
    return found


def issue(ra: RaServer, job: tuple[str, str, str]) -> httpx.Response:
    with ra.client() as c:
        return c.post("/v1/issue", json={"csr": job[2]}, headers={"Authorization": f"Bearer {job[1]}"})


@pytest.mark.filterwarnings("ignore:unclosed <ssl.SSLSocket:ResourceWarning")
def test_recorder_killed_mid_issuance_is_restarted_and_loses_nothing(ca: CaDir, tmp_path: Path) -> None:
    ra = start_ra(ca, tmp_path / "logs", "--workers", "2")
    jobs = [(f"k{i}", ca.register(f"k{i}"), csr_for(f"k{i}")) for i in range(120)]
    answered: dict[str, str] = {}
    codes: list[int] = []
    try:
        [first] = recorder_pids(ra.proc.pid)
        killed: list[int] = []

        def one(job: tuple[str, str, str]) -> None:
            if len(answered) >= 30 and not killed:
                killed.append(first)
                os.kill(first, signal.SIGKILL)  # the recorder alone, mid-stream
            try:
                r = issue(ra, job)
            except httpx.HTTPError:
                return
            codes.append(r.status_code)
            if r.status_code == 200:
                answered[job[0]] = r.json()["serial"]

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(one, jobs[:100]))
        assert killed
        wait_until("a new recorder", lambda: recorder_pids(ra.proc.pid) not in ([], [first]))
        # The workers are the same processes; the next issuances are served by the new recorder.
        for job in jobs[100:]:
            for _ in range(40):  # its socket may take a moment: 503 meanwhile, 0.1 s apart
                r = issue(ra, job)
                if r.status_code != 503:
                    break
                time.sleep(0.1)
            assert r.status_code == 200, r.text
            answered[job[0]] = r.json()["serial"]
        log = ra.proc.log_text()
    finally:
        ra.proc.stop()
    gc.collect()
    assert "recorder_died" in log and "recorder_started" in log
    assert set(codes) <= {200, 503}, codes  # the kill's casualties are 503s, never a 500
    db = sqlite3.connect(ca.paths.store)
    try:
        certs = dict(db.execute("SELECT serial, identity FROM certificates WHERE via='token'").fetchall())
        used = dict(db.execute("SELECT used_serial, identity FROM tokens WHERE used_at IS NOT NULL").fetchall())
    finally:
        db.close()
    assert certs == used  # every certificate spent its token, and no token was spent without one
    for service, serial in answered.items():  # every answer the clients got is on record
        assert certs.get(serial) == service


def test_recorder_ends_with_zt_ra_even_after_a_sigkill(ca: CaDir, tmp_path: Path) -> None:
    """zt-ra's main process killed alone (SIGKILL: no clean-up runs): its recorder ends by
    itself (PR_SET_PDEATHSIG), it does not stay behind holding the store."""
    ra = start_ra(ca, tmp_path / "logs", "--workers", "2")
    try:
        [recorder] = recorder_pids(ra.proc.pid)
        os.kill(ra.proc.pid, signal.SIGKILL)
        wait_until("the recorder to end", lambda: not Path(f"/proc/{recorder}").exists() or _zombie(recorder))
    finally:
        ra.proc.kill()  # the rest of its process group (the workers): SIGKILL to the group


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_recorder_ends_when_zt_ra_stops(ca: CaDir, tmp_path: Path) -> None:
    """A stop as an operator gives it (SIGTERM to the process group, which the recorder also
    receives, and zt-ra's own SIGTERM after its workers): no recorder is left."""
    ra = start_ra(ca, tmp_path / "logs", "--workers", "2")
    [recorder] = recorder_pids(ra.proc.pid)
    code = ra.proc.stop()
    assert code == 0, ra.proc.log_tail()
    wait_until("the recorder to end", lambda: not Path(f"/proc/{recorder}").exists() or _zombie(recorder), 10)
