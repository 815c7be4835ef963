"""Rate limits and token lockout, as a client sees them: a real zt-ra over HTTPS on loopback.

Other sources are other loopback addresses (127.0.0.2, 127.0.0.3: the client binds its end
there), which is what the RA keys per-source state by: the TCP peer, never a header.
Windows are kept short with the flags (`--rate-issue 3/30s`, `--lockout-base 1s`).
"""

from __future__ import annotations

import json
import re
import sqlite3
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import CaDir, RaServer, start_ra
from zt.agent.material import build_csr, csr_pem
from zt.clock import utcnow
from zt.pki.keys import generate_key
from zt.pki.renewal_proof import make_renewal_proof
from zt.ra import tokens

ATTACKER = "127.0.0.2"
NEIGHBOUR = "127.0.0.3"


def sid(service: str) -> str:
    return f"spiffe://zt.lab/svc/{service}"


def client(ra: RaServer, source: str = "127.0.0.1") -> httpx.Client:
    """A client whose connections come from `source` (one of 127.0.0.0/8)."""
    ctx = ssl.create_default_context(cafile=str(ra.ca.paths.bundle))
    transport = httpx.HTTPTransport(verify=ctx, local_address=source)
    return httpx.Client(base_url=ra.url, transport=transport, timeout=15.0)


def issue(ra: RaServer, token: str, service: str, source: str = "127.0.0.1", *, key: Any = None) -> httpx.Response:
    # A new connection per request: with two workers, the kernel hands each to either one.
    csr = csr_pem(build_csr(key or generate_key(), sid(service)))
    with client(ra, source) as c:
        return c.post("/v1/issue", json={"csr": csr}, headers={"Authorization": f"Bearer {token}"})


def renew(ra: RaServer, key: Any, chain_pem: str, service: str) -> tuple[Any, httpx.Response]:
    new_key = generate_key()
    csr = build_csr(new_key, sid(service))
    chain = x509.load_pem_x509_certificates(chain_pem.encode())
    proof = make_renewal_proof(key, chain, sid(service), csr.public_bytes(serialization.Encoding.DER), utcnow())
    with client(ra) as c:
        return new_key, c.post("/v1/renew", json={"csr": csr_pem(csr), "proof": proof})


def assert_429(r: httpx.Response, code: str) -> int:
    """A 429 as the contract fixes it; returns Retry-After."""
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error", "reason", "retry_after"}, body
    assert body["error"] == code and body["reason"], body
    retry = r.headers["retry-after"]
    assert re.fullmatch(r"[1-9][0-9]*", retry), retry
    assert body["retry_after"] == int(retry)
    return int(retry)


def log_events(ra: RaServer, event: str) -> list[dict[str, Any]]:
    out = []
    for line in ra.proc.log_path.read_text().splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            if doc.get("event") == event:
                out.append(doc)
    return out


def audit_rows(ca: CaDir, action: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(ca.paths.store)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM audit WHERE action=? ORDER BY id", (action,)).fetchall()
    finally:
        conn.close()


def metric(ra: RaServer, name: str, labels: str) -> float:
    with client(ra, NEIGHBOUR) as c:
        text = c.get("/metrics").text
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture
def ra2_default(ca: CaDir, tmp_path: Path) -> Iterator[RaServer]:
    """Two workers and the default limits (10 issuances per identity per minute)."""
    srv = start_ra(ca, tmp_path / "logs", "--workers", "2")
    yield srv
    srv.proc.stop()


# -- per identity ----------------------------------------------------------------------------


def test_eleventh_issuance_within_a_minute_is_429_with_two_workers_and_others_are_unaffected(
    ra2_default: RaServer,
) -> None:
    ra = ra2_default
    tokens_a = [ra.ca.register("a") for _ in range(11)]
    codes = [issue(ra, t, "a").status_code for t in tokens_a[:10]]
    assert codes == [200] * 10
    refused = issue(ra, tokens_a[10], "a")
    retry = assert_429(refused, "rate_limited")
    assert 1 <= retry <= 60
    assert "issuances for a: at most 10 per 60s" in refused.json()["reason"]
    # Another service is not affected, and the refused token was not spent: it works later.
    assert issue(ra, ra.ca.register("b"), "b").status_code == 200
    listed = ra.ca.ztca("list", "--json").json()["certificates"]
    assert sum(1 for c in listed if c["identity"] == "a") == 10
    (line,) = [e for e in log_events(ra, "rate_limited") if e["key"] == "a"]
    assert line["limit"] == "issue_per_identity" and line["endpoint"] == "/v1/issue"
    assert 0 < line["retry_after"] <= 60 and line["component"] == "zt-ra"
    (row,) = audit_rows(ra.ca, "rate_limited")
    assert row["actor"] == sid("a") and row["subject"] == "identity:a" and row["outcome"] == "refused"
    assert metric(ra, "ra_rate_limited_total", 'limit="issue_per_identity"') == 1.0


def test_identity_limit_holds_across_an_ra_restart(ca: CaDir, tmp_path: Path) -> None:
    ra = start_ra(ca, tmp_path / "logs", "--rate-issue", "3/1m", name="zt-ra-1")
    try:
        assert [issue(ra, ca.register("a"), "a").status_code for _ in range(3)] == [200] * 3
    finally:
        ra.proc.stop()
    ra = start_ra(ca, tmp_path / "logs", "--rate-issue", "3/1m", name="zt-ra-2")
    try:
        assert_429(issue(ra, ca.register("a"), "a"), "rate_limited")
        assert issue(ra, ca.register("b"), "b").status_code == 200
    finally:
        ra.proc.stop()


def test_renewals_count_against_the_identity_and_the_window_slides(ca: CaDir, tmp_path: Path) -> None:
    ra = start_ra(ca, tmp_path / "logs", "--rate-issue", "2/4s")
    try:
        key = generate_key()
        first = issue(ra, ca.register("a"), "a", key=key)
        assert first.status_code == 200, first.text
        key, second = renew(ra, key, first.json()["chain"], "a")
        assert second.status_code == 200, second.text
        _, third = renew(ra, key, second.json()["chain"], "a")
        retry = assert_429(third, "rate_limited")
        assert retry <= 4
        assert log_events(ra, "rate_limited")[-1]["endpoint"] == "/v1/renew"
        token = ca.register("a")
        assert assert_429(issue(ra, token, "a"), "rate_limited") <= retry
        time.sleep(4.2)  # the whole window: both earlier hits have left it
        # The refused issuance did not spend its token.
        assert issue(ra, token, "a").status_code == 200
        _, again = renew(ra, key, second.json()["chain"], "a")
        assert again.status_code == 200, again.text
    finally:
        ra.proc.stop()


# -- per source ------------------------------------------------------------------------------


def test_source_limit_counts_the_tcp_peer_on_every_endpoint(ca: CaDir, tmp_path: Path) -> None:
    ra = start_ra(ca, tmp_path / "logs", "--rate-source", "4/30s", "--workers", "2")
    try:
        with client(ra, ATTACKER) as c:
            got = [
                c.get("/v1/status").status_code,
                c.get("/v1/bundle").status_code,
                c.get("/nope").status_code,
                c.get("/metrics").status_code,
            ]
            assert got == [200, 200, 404, 200]
            retry = assert_429(c.get("/v1/status"), "rate_limited")
            assert 1 <= retry <= 30
            # A header cannot make it another source.
            assert_429(c.get("/v1/status", headers={"X-Forwarded-For": "10.9.9.9"}), "rate_limited")
            assert_429(c.post("/v1/issue", json={}), "rate_limited")
        with client(ra, NEIGHBOUR) as c:
            assert c.get("/v1/status").status_code == 200
        lines = [e for e in log_events(ra, "rate_limited") if e["limit"] == "requests_per_source"]
        assert [e["key"] for e in lines] == [ATTACKER] * 3
        assert [e["endpoint"] for e in lines] == ["/v1/status", "/v1/status", "/v1/issue"]
        # Audited once for the run of refusals, not once per refused request.
        (row,) = audit_rows(ca, "rate_limited")
        assert row["subject"] == f"source:{ATTACKER}" and row["outcome"] == "refused"
        assert metric(ra, "ra_rate_limited_total", 'limit="requests_per_source"') == 3.0
    finally:
        ra.proc.stop()


def test_issuance_requests_count_against_their_source_whether_they_succeed_or_not(ca: CaDir, tmp_path: Path) -> None:
    """/v1/issue and /v1/renew count the source in the issuance transaction, or after the answer
    when they end before it; both count."""
    ra = start_ra(ca, tmp_path / "logs", "--rate-source", "4/30s")
    try:
        assert issue(ra, ca.register("a"), "a", ATTACKER).status_code == 200
        assert issue(ra, wrong_bootstrap_token(), "a", ATTACKER).status_code == 401
        with client(ra, ATTACKER) as c:
            assert c.post("/v1/renew", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
            assert c.get("/v1/status").status_code == 200
            assert_429(c.post("/v1/issue", json={"csr": "x"}), "rate_limited")
        # The token refused for the source's limit was not spent.
        token = ca.register("b")
        assert_429(issue(ra, token, "b", ATTACKER), "rate_limited")
        assert issue(ra, token, "b", NEIGHBOUR).status_code == 200
    finally:
        ra.proc.stop()


# -- token lockout ---------------------------------------------------------------------------


def wrong_bootstrap_token() -> str:
    return tokens.new_token(tokens.BOOTSTRAP_PREFIX)


def test_wrong_tokens_from_one_source_lock_it_out_with_growing_backoff(ca: CaDir, tmp_path: Path) -> None:
    ra = start_ra(
        ca,
        tmp_path / "logs",
        "--workers",
        "2",
        "--lockout-threshold",
        "3",
        "--lockout-base",
        "1s",
        "--lockout-max",
        "30s",
    )
    wrong: list[str] = []

    def guess() -> httpx.Response:
        wrong.append(wrong_bootstrap_token())
        return issue(ra, wrong[-1], "a", ATTACKER)

    try:
        assert [guess().status_code for _ in range(2)] == [401, 401]
        assert assert_429(guess(), "locked_out") == 1
        # Locked out: a correct token from the same source is refused too, and counts nothing.
        good = ca.register("a")
        assert_429(issue(ra, good, "a", ATTACKER), "locked_out")
        # Another source is not affected.
        assert issue(ra, ca.register("b"), "b", NEIGHBOUR).status_code == 200
        seen = [1]
        for expected in (2, 4):
            time.sleep(seen[-1] + 0.2)
            seen.append(assert_429(guess(), "locked_out"))
            assert seen[-1] == expected, seen
        time.sleep(seen[-1] + 0.2)
        r = issue(ra, good, "a", ATTACKER)
        assert r.status_code == 200, r.text
        # The correct token forgot the failures: the next wrong one is a plain 401 again.
        assert guess().status_code == 401

        starts = [e for e in log_events(ra, "locked_out") if e["started"]]
        assert [(e["source"], e["credential"], e["failures"], e["retry_after"]) for e in starts] == [
            (ATTACKER, "bootstrap_token", 3, 1.0),
            (ATTACKER, "bootstrap_token", 4, 2.0),
            (ATTACKER, "bootstrap_token", 5, 4.0),
        ]
        rows = audit_rows(ca, "locked_out")
        assert [(r["actor"], r["subject"]) for r in rows] == [(f"source:{ATTACKER}", "bootstrap_token")] * 3
        assert metric(ra, "ra_lockouts_total", 'credential="bootstrap_token"') == 3.0
        assert metric(ra, "ra_token_failures_total", 'credential="bootstrap_token"') == 6.0
    finally:
        ra.proc.stop()
    assert_no_trace_of(wrong, ca, ra)


def assert_no_trace_of(wrong: list[str], ca: CaDir, ra: RaServer) -> None:
    """Neither a wrong token nor its hash is anywhere in the store (database, WAL) or the log."""
    files = [p for p in ca.dir.iterdir() if p.name.startswith(ca.paths.store.name)] + [ra.proc.log_path]
    assert ca.paths.store in files
    blobs = b"".join(p.read_bytes() for p in files)
    for t in wrong:
        assert t.encode() not in blobs
        assert tokens.token_hash(t).encode() not in blobs
        assert bytes.fromhex(tokens.token_hash(t)) not in blobs
    conn = sqlite3.connect(ca.paths.store)
    try:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(token_failures)")]
    finally:
        conn.close()
    assert cols == ["source", "credential", "failures", "last_failure", "locked_until", "forget_at"]


def test_wrong_admin_tokens_lock_out_the_source_for_the_admin_api(ca: CaDir, tmp_path: Path) -> None:
    ra = start_ra(ca, tmp_path / "logs", "--lockout-threshold", "2", "--lockout-base", "2s")
    admin = ca.admin_token()
    wrong = [tokens.new_token(tokens.ADMIN_PREFIX) for _ in range(2)]

    def register(source: str, token: str, service: str) -> httpx.Response:
        with client(ra, source) as c:
            return c.post("/v1/register", json={"service": service}, headers={"Authorization": f"Bearer {token}"})

    try:
        assert register(ATTACKER, wrong[0], "x").status_code == 401
        assert assert_429(register(ATTACKER, wrong[1], "x"), "locked_out") == 2
        assert_429(register(ATTACKER, admin, "x"), "locked_out")
        with client(ra, ATTACKER) as c:
            revoke = c.post("/v1/revoke", json={"service": "x"}, headers={"Authorization": f"Bearer {admin}"})
        assert_429(revoke, "locked_out")
        assert register(NEIGHBOUR, admin, "y").status_code == 201
        # Per credential: the source's bootstrap tokens still work.
        assert issue(ra, ca.register("z"), "z", ATTACKER).status_code == 200
        time.sleep(2.2)
        assert register(ATTACKER, admin, "x").status_code == 201
        (start,) = [e for e in log_events(ra, "locked_out") if e["started"]]
        assert start["credential"] == "admin_token" and start["failures"] == 2
    finally:
        ra.proc.stop()
    assert_no_trace_of(wrong, ca, ra)


def test_limits_and_lockout_can_be_turned_off(ca: CaDir, tmp_path: Path) -> None:
    ra = start_ra(ca, tmp_path / "logs", "--rate-issue", "0", "--rate-source", "0", "--lockout-threshold", "0")
    try:
        assert [issue(ra, ca.register("a"), "a").status_code for _ in range(12)] == [200] * 12
        assert [issue(ra, wrong_bootstrap_token(), "a", ATTACKER).status_code for _ in range(8)] == [401] * 8
    finally:
        ra.proc.stop()


def test_openapi_declares_429_with_retry_after(ra: RaServer) -> None:
    with ra.client() as c:
        doc = c.get("/openapi.json").json()
    for path, method in [("/v1/issue", "post"), ("/v1/renew", "post"), ("/v1/register", "post"), ("/v1/status", "get")]:
        resp = doc["paths"][path][method]["responses"]["429"]
        assert "Retry-After" in resp["headers"], path
        ref = resp["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert "retry_after" in doc["components"]["schemas"][ref]["properties"]
