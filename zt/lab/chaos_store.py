"""What the RA's store holds after a kill -9 and a restart (chaos plan 6a), as evidence.

The checks are those of the e2e kill test (tests/e2e/test_ra_concurrency.py), now taken after
a lab run with load: SQLite's integrity check; every certificate issued by token spent exactly
that token, and no token is spent without its certificate; every serial any agent was given
(the generations in the agents' logs and in their certificate directories) is on record in the
store; no serial twice; and `ztca audit verify` walks the hash chain clean. The store is read
where the CA keeps it: the SQLite file of the process runtime's CA directory or its PostgreSQL
database, or (container runtime) from inside the RA container, which alone reaches either.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zt.lab import core
from zt.lab.chaos_history import Evidence
from zt.lab.chaos_revocation import RevocationWatch
from zt.lab.rotations import agent_generations
from zt.lab.runtime import RunningLab


def norm(serial: str) -> str:
    return str(serial).lower().lstrip("0") or "0"


def held_serials(cert_dirs: Iterable[Path], logged: Iterable[str]) -> set[str]:
    """Every serial an agent was given: logged as written, or in a kept generation's svid.json."""
    held = {norm(s) for s in logged}
    for out in cert_dirs:
        for svid in out.glob("gen-*/svid.json"):
            try:
                held.add(norm(json.loads(svid.read_text())["serial"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a torn generation: the cert-dir criterion names it
    return held


BY_TOKEN = "SELECT serial, identity FROM certificates WHERE via='token'"
SPENT = "SELECT used_serial, identity FROM tokens WHERE used_at IS NOT NULL"


# The container runtime's store is inside the run: the RA container's CA volume (SQLite) or the
# PostgreSQL container on the run's store network, which the host does not reach. This runs in
# the RA container (the RA image's Python, with the RA's own ZT_STORE) and answers the same
# questions as JSON: argv[1] the queries, argv[2] the SQLite file.
IN_CONTAINER_READER = r"""
import json, os, sqlite3, sys
queries, url = json.loads(sys.argv[1]), os.environ.get("ZT_STORE")
if url:
    import psycopg
    with psycopg.connect(url) as pg:
        print(json.dumps({"integrity": None, "rows": [[list(r) for r in pg.execute(q)] for q in queries]}))
else:
    db = sqlite3.connect("file:" + sys.argv[2] + "?mode=ro", uri=True)
    ok = db.execute("PRAGMA integrity_check").fetchone()[0]
    print(json.dumps({"integrity": ok, "rows": [[list(r) for r in db.execute(q)] for q in queries]}))
"""


def _rows(lab: RunningLab, store_file: Path, store_url: str | None) -> tuple[str | None, list[Any], list[Any]]:
    """(integrity, certificates by token, spent tokens) from SQLite, or from PostgreSQL (which
    has no integrity check to run: None); inside the run when the lab reads its store there
    (`read_store`, the container runtime)."""
    read_store = getattr(lab, "read_store", None)
    if read_store is not None:
        doc = read_store(IN_CONTAINER_READER, [BY_TOKEN, SPENT])
        return doc["integrity"], doc["rows"][0], doc["rows"][1]
    if store_url:
        import psycopg  # the PostgreSQL store's driver (zt.ra.store_pg); only a postgres lab needs it

        with psycopg.connect(store_url) as pg:
            return None, list(pg.execute(BY_TOKEN)), list(pg.execute(SPENT))
    db = sqlite3.connect(f"file:{store_file}?mode=ro", uri=True)
    try:
        integrity = str(db.execute("PRAGMA integrity_check").fetchone()[0])
        return integrity, list(db.execute(BY_TOKEN)), list(db.execute(SPENT))
    finally:
        db.close()


def store_evidence(lab: RunningLab, store_file: Path, held: set[str], store_url: str | None = None) -> dict[str, Any]:
    """The store's verdict inputs (zt.lab.checks_chaos.store_whole judges them): the SQLite file
    `store_file`, or the PostgreSQL database `store_url` when given."""
    listed = [norm(str(c["serial"])) for c in lab.ztca("list")["certificates"]]
    integrity, token_rows, spent_rows = _rows(lab, store_file, store_url)
    by_token = {norm(s): i for s, i in token_rows}
    spent = {norm(s or ""): i for s, i in spent_rows}
    mismatch = sorted(
        [f"certificate {s} ({i}) without its spent token" for s, i in by_token.items() if spent.get(s) != i]
        + [f"token of {i} spent on {s}, no such certificate" for s, i in spent.items() if by_token.get(s) != i]
    )
    code, output = lab.ztca_exit("audit", "verify", "--dir", core.CA_DIR)
    return {
        "integrity": integrity,
        "certificates": len(listed),
        "held": len(held),
        "held_not_in_store": sorted(held - set(listed))[:20],
        "token_certificates": len(by_token),
        "tokens_spent": len(spent),
        "token_mismatch": mismatch[:20],
        "duplicate_serials": sorted(s for s, n in Counter(listed).items() if n > 1)[:20],
        "audit_verify_exit": code,
        "audit_verify_output": output.strip()[-300:],
    }


def evidence(
    lab: RunningLab, records: list[dict[str, Any]], t0: float, watch: RevocationWatch | None, *, read_store: bool
) -> Evidence:
    """A chaos run's evidence after its load: the agents' logs and generations, their
    certificate directories, and (read_store: a plan that judges the store) the store's state,
    from the lab's SQLite file or its PostgreSQL database."""
    services = [s.name for s in lab.topology.services]
    logs = {s: lab.component_log(f"agent-{s}") for s in services}
    generations = {s: agent_generations(s, logs[s]) for s in services}
    cert_dirs = {s: lab.agent_identity(s).cert_dir for s in services}
    store = None
    if read_store:
        held = held_serials(cert_dirs.values(), [g.new_serial for gs in generations.values() for g in gs])
        store = store_evidence(lab, lab.work_dir / "ca" / "zt.db", held, getattr(lab, "store_url", None))
    return Evidence(records, logs, generations, cert_dirs, t0, watch, store)
