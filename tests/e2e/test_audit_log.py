"""The audit log against real processes: an RA with two workers and `ztca` appending at once,
refused tokens, `--audit-stdout`, tampering seen by `ztca audit verify` as a subprocess, and
writers killed in the middle of an append."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CaDir, RaServer, start_ra
from zt.agent.material import build_csr, csr_pem
from zt.auditlog import FAILPOINT_ENV, torn_path
from zt.pki.keys import generate_key


def csr_for(service: str) -> str:
    return csr_pem(build_csr(generate_key(), f"spiffe://zt.lab/svc/{service}"))


def ztca(
    ca: CaDir, *argv: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`ztca` as its own process, as an operator runs it next to the RA."""
    verb = list(argv[:2]) if argv[0] == "audit" else [argv[0]]
    rest = list(argv[len(verb) :])
    return subprocess.run(
        [sys.executable, "-m", "zt.cli.ztca", *verb, "--dir", str(ca.dir), *rest],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def entries(ca: CaDir) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ca.paths.audit_log.read_text().splitlines()]


def issue(ra: RaServer, token: str, csr: str) -> httpx.Response:
    with ra.client() as c:
        return c.post("/v1/issue", json={"csr": csr}, headers={"Authorization": f"Bearer {token}"})


def test_audit_two_workers_and_ztca_append_at_once_and_the_chain_verifies(ca: CaDir, tmp_path: Path) -> None:
    jobs = [(f"w{i}", ca.register(f"w{i}"), csr_for(f"w{i}")) for i in range(30)]
    ra = start_ra(ca, tmp_path / "logs", "--workers", "2", "--audit-stdout")
    try:
        admin = ca.admin_token()

        def cli_writer(i: int) -> int:
            return ztca(ca, "register", f"cli{i}").returncode

        with ThreadPoolExecutor(8) as pool:
            cli = [pool.submit(cli_writer, i) for i in range(4)]
            answers = list(pool.map(lambda j: issue(ra, j[1], j[2]), jobs))
            refused = [pool.submit(issue, ra, "zt-bootstrap-not-a-real-token", jobs[0][2]) for _ in range(3)]
            with ra.client() as c:
                bad_admin = c.post("/v1/register", json={"service": "x"}, headers={"Authorization": "Bearer nope"})
        assert [f.result() for f in cli] == [0] * 4
        assert [r.status_code for r in answers] == [200] * 30
        assert [f.result().status_code for f in refused] == [401] * 3
        assert bad_admin.status_code == 401
        serial = answers[0].json()["serial"]
        with ra.client() as c:
            r = c.post("/v1/revoke", json={"serial": serial}, headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 200
        # The lines are in the file before the answers came back: no wait here.
        log = entries(ca)
        issued = {e["subject"] for e in log if e["action"] == "issue" and e["detail"] == "via bootstrap token"}
        assert issued == {r.json()["serial"] for r in answers}
        assert any(e["action"] == "revoke" and e["subject"] == serial and e["actor"] == "admin" for e in log)
        assert sum(1 for e in log if e["action"] == "register" and e["actor"] == "ztca") == 34
        refusals = [e for e in log if e["action"] == "refuse"]
        assert sorted(e["subject"] for e in refusals) == ["admin_token"] + ["bootstrap_token"] * 3
        assert all(e["outcome"] == "refused" and e["actor"] == "127.0.0.1" for e in refusals)
        assert not any("not-a-real-token" in line or "nope" in line for line in ca.paths.audit_log.read_text().split())

        done = ztca(ca, "audit", "verify", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["lines"] == len(log)
        # --audit-stdout: every line the RA appended is on its stdout, exactly as in the file.
        file_lines = set(ca.paths.audit_log.read_text().splitlines())
        echoed = [line for line in ra.proc.log_text().splitlines() if line.startswith('{"seq":')]
        assert echoed and set(echoed) <= file_lines
        assert {json.loads(line)["subject"] for line in echoed} >= issued
    finally:
        ra.proc.stop()
    assert oct(ca.paths.audit_log.stat().st_mode & 0o777) == "0o600"


def test_audit_verify_subprocess_names_each_tampered_line(ca: CaDir) -> None:
    for i in range(5):
        ca.register(f"t{i}")
    path = ca.paths.audit_log
    good = path.read_bytes()
    lines = good.splitlines(keepends=True)
    swapped = list(lines)
    swapped[2], swapped[3] = swapped[3], swapped[2]
    cases = {
        "edited": ([*lines[:2], lines[2].replace(b"svc/t1", b"svc/tX"), *lines[3:]], 3),
        "removed": ([*lines[:2], *lines[3:]], 3),
        "reordered": (swapped, 3),
        "torn": ([*lines[:4], lines[4][:33]], 5),
    }
    for kind, (tampered, line) in cases.items():
        assert tampered != lines, kind
        path.write_bytes(b"".join(tampered))
        r = ztca(ca, "audit", "verify")
        assert r.returncode == 1, (kind, r.stdout)
        assert f"line {line}: {kind}:" in r.stdout, r.stdout
    path.write_bytes(good)
    assert ztca(ca, "audit", "verify").returncode == 0


def test_audit_ztca_killed_mid_append_leaves_a_torn_line_verify_reports_and_repair_restores(
    ca: CaDir, tmp_path: Path
) -> None:
    """A burst of issuance, the RA killed with SIGKILL in the middle of it, then a writer killed
    between writing part of its line and the newline: verify reports the torn last line, every
    answered issuance is in the file, and `ztca audit repair` makes the file whole again."""
    jobs = [(f"k{i}", ca.register(f"k{i}"), csr_for(f"k{i}")) for i in range(60)]
    ra = start_ra(ca, tmp_path / "logs", "--workers", "2")
    answered: dict[str, str] = {}
    killed = threading.Event()

    def one(job: tuple[str, str, str]) -> None:
        if len(answered) >= 15 and not killed.is_set():
            killed.set()
            ra.proc.kill()  # SIGKILL to the RA's whole process group, mid-burst
        try:
            r = issue(ra, job[1], job[2])
            if r.status_code == 200:
                answered[job[0]] = r.json()["serial"]
        except httpx.HTTPError:
            pass

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(one, jobs))
    assert not ra.proc.alive()
    assert 15 <= len(answered) < 60

    torn = ztca(ca, "register", "late", env={FAILPOINT_ENV: "70"})
    assert torn.returncode == -9  # it died holding the lock, 70 bytes into its line
    r = ztca(ca, "audit", "verify", "--json")
    assert r.returncode == 1
    problem = json.loads(r.stdout)["problem"]
    assert problem["kind"] == "torn"
    assert problem["line"] == len(ca.paths.audit_log.read_bytes().splitlines())
    whole = [json.loads(line) for line in ca.paths.audit_log.read_bytes().splitlines()[:-1]]
    in_file = {e["subject"] for e in whole if e["action"] == "issue"}
    assert set(answered.values()) <= in_file  # every answered issuance is in the file

    fixed = ztca(ca, "audit", "repair")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "set aside a torn line of 70 byte(s)" in fixed.stdout
    log = entries(ca)
    assert log[-1]["action"] == "register" and log[-1]["subject"] == "spiffe://zt.lab/svc/late"
    # The fragment is the start of the first line that write carried: the row of an issuance the
    # killed RA committed but never appended (ztca appended it first), or ztca's own.
    fragment = json.loads(torn_path(ca.paths.audit_log).read_text().splitlines()[0])["fragment"]
    restored = [line for line in ca.paths.audit_log.read_text().splitlines() if line.startswith(fragment)]
    assert len(restored) == 1
    assert json.loads(restored[0])["seq"] == problem["line"]
    assert ztca(ca, "audit", "verify").returncode == 0


def test_audit_ra_recorder_killed_mid_append_is_repaired_by_the_next_recorder(
    ca: CaDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The RA's recorder process (zt.ra.commit_server: every issuance of both workers is
    recorded there) tears its 3rd append and dies with SIGKILL holding both locks; zt-ra starts
    another, which sets the fragment aside and appends the rows at its start, and issuance
    works again: afterwards the chain verifies, every answered issuance is in it, and the
    fragment is kept as evidence.

    An append holds the lines of one group commit: with 4 clients a batch holds at most 4
    issuances, so 24 issuances make at least 6 appends and the recorder reaches its 3rd."""
    jobs = [(f"f{i}", ca.register(f"f{i}"), csr_for(f"f{i}")) for i in range(24)]
    after = [(f"g{i}", ca.register(f"g{i}"), csr_for(f"g{i}")) for i in range(40)]
    monkeypatch.setenv(FAILPOINT_ENV, "55@3")
    ra = start_ra(ca, tmp_path / "logs", "--workers", "2")
    monkeypatch.delenv(FAILPOINT_ENV)
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda j: _try_issue(ra, j), jobs))
        assert "recorder_died" in ra.proc.log_text(), ra.proc.log_tail()
        # Then issuances one by one until one is answered by the next recorder (it starts after
        # a backoff of 0.2 s): a bounded number, 0.25 s apart.
        for job in after:
            answer = _try_issue(ra, job)
            answers.append(answer)
            if answer is not None and "audit_torn_tail" in ra.proc.log_text():
                break
            time.sleep(0.25)
    finally:
        ra.proc.stop()
    log_text = ra.proc.log_text()
    served = {r for r in answers if r}
    assert served, "no issuance was answered"
    assert answers[-1] is not None, "no issuance was answered after the recorder died"
    assert "recorder_started" in log_text
    assert torn_path(ca.paths.audit_log).exists(), ra.proc.log_tail()
    assert "audit_torn_tail" in log_text
    ztca(ca, "audit", "repair")  # rows of a recorder killed after COMMIT, if none came after it
    r = ztca(ca, "audit", "verify")
    assert r.returncode == 0, r.stdout
    assert served <= {e["subject"] for e in entries(ca) if e["action"] == "issue"}


def _try_issue(ra: RaServer, job: tuple[str, str, str]) -> str | None:
    try:
        r = issue(ra, job[1], job[2])
    except httpx.HTTPError:
        return None
    return str(r.json()["serial"]) if r.status_code == 200 else None


def test_audit_tail_prints_last_lines_and_follows_new_ones(ca: CaDir) -> None:
    for i in range(3):
        ca.register(f"n{i}")
    last = ztca(ca, "audit", "tail", "-n", "2")
    assert [json.loads(line)["subject"] for line in last.stdout.splitlines()] == [
        "spiffe://zt.lab/svc/n1",
        "spiffe://zt.lab/svc/n2",
    ]
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zt.cli.ztca",
            "audit",
            "tail",
            "-n",
            "1",
            "-f",
            "--timeout",
            "60",
            "--dir",
            str(ca.dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        # SIGINT as a terminal gives it, also when this test runs in a background job (where the
        # shell leaves SIGINT ignored, and Python then installs no KeyboardInterrupt handler).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert follower.stdout is not None
        # Its first line (the last one already there) says it is following now.
        assert json.loads(follower.stdout.readline())["subject"] == "spiffe://zt.lab/svc/n2"
        ca.register("followed")
        first = follower.stdout.readline()
        assert json.loads(first)["subject"] == "spiffe://zt.lab/svc/followed"
    finally:
        follower.send_signal(signal.SIGINT)  # -f runs until SIGINT, and then exits 0
        try:
            code = follower.wait(timeout=30)
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait()
            if follower.stdout is not None:
                follower.stdout.close()
        assert code == 0
    assert ztca(ca, "audit", "tail", "-n", "-1").returncode == 2
