"""Fault plans as data: every plan in chaos/ loads, bad plans are refused with the key named,
and the schedule is a function of the seed (the same seed replays the same run)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from zt.errors import ConfigError
from zt.lab import chaos_plan, edges
from zt.lab.topology import Topology


def test_chaos_plans_in_the_repository_load_and_name_real_edges() -> None:
    plans = chaos_plan.load_plans()
    names = [
        "ra-down",
        "ra-slow",
        "crl-down-revocation",
        "mesh-latency",
        "mesh-reset",
        "agent-kill",
        "ra-kill",
        "replica-kill",
    ]
    assert [p.name for p in plans] == [n for n in names if (chaos_plan.PLANS_DIR / f"{n}.json").exists()]
    topology = Topology(chaos=True)
    known = {e.name for e in edges.chaos_edges(topology)}
    components = {"ra", *(f"agent-{s.name}" for s in topology.services)}  # process faults (plan 6)
    for p in plans:
        for f in p.faults:
            assert f.edge in (components if f.toxic in chaos_plan.PROCESS_TOXICS else known), f"{p.name}: {f.edge}"


def test_chaos_schedule_same_seed_same_schedule_other_seed_moves_the_faults() -> None:
    plans = chaos_plan.load_plans()
    a, b, c = (chaos_plan.schedule(plans, s).to_json() for s in (42, 42, 43))
    assert a == b
    assert a != c
    slots = chaos_plan.schedule(plans, 42).slots
    for earlier, later in itertools.pairwise(slots):
        assert earlier.end <= later.begin  # plans never overlap
        assert all(f.until + earlier.plan.recovery <= earlier.end + 1e-9 for f in earlier.faults)


def _write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    return path


GOOD_FAULT = {"edge": "agent->ra", "toxic": "down", "start": 1, "duration": 5, "heal": "enable"}


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({**GOOD_FAULT, "heal": "remove"}, "the heal step of 'down' is 'enable'"),
        ({**GOOD_FAULT, "toxic": "flood"}, "toxic 'flood' is not one of"),
        ({**GOOD_FAULT, "toxic": "latency", "heal": "remove", "attributes": {"latency": 100}}, "takes exactly"),
        ({**GOOD_FAULT, "duration": 0}, "duration in (0, 120]"),
        ({**GOOD_FAULT, "colour": "red"}, "unknown keys colour"),
        ({k: v for k, v in GOOD_FAULT.items() if k != "heal"}, "missing 'heal'"),
        ({**GOOD_FAULT, "toxic": "kill", "heal": "restart"}, "a kill fault names a component"),
        ({**GOOD_FAULT, "edge": "ra", "toxic": "kill", "heal": "enable"}, "the heal step of 'kill' is 'restart'"),
    ],
)
def test_chaos_plan_bad_fault_refused_naming_the_key(tmp_path: Path, fault: dict[str, object], message: str) -> None:
    path = _write(tmp_path, {"priority": 1, "title": "t", "recovery": 1, "faults": [fault]})
    with pytest.raises(ConfigError, match=r"bad\.json faults\[0\]") as e:
        chaos_plan.load_plan(path)
    assert message in str(e.value)


def test_chaos_plan_without_faults_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="faults is a non-empty list"):
        chaos_plan.load_plan(_write(tmp_path, {"priority": 1, "title": "t", "recovery": 1, "faults": []}))


def test_chaos_plans_unknown_name_refused() -> None:
    with pytest.raises(ConfigError, match="no plan nope"):
        chaos_plan.load_plans(["nope"])


def test_chaos_plans_by_store_one_ra_plans_on_sqlite_the_replica_kill_on_postgres() -> None:
    sqlite = [p.name for p in chaos_plan.load_plans(store="sqlite")]
    postgres = [p.name for p in chaos_plan.load_plans(store="postgres")]
    assert "ra-kill" in sqlite and "replica-kill" not in sqlite
    assert "replica-kill" in postgres and not {"ra-down", "ra-slow", "ra-kill"} & set(postgres)
    with pytest.raises(ConfigError, match="does not run on store sqlite"):
        chaos_plan.load_plans(["replica-kill"], store="sqlite")


def test_chaos_plan_bad_stores_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, {"priority": 1, "title": "t", "recovery": 1, "faults": [GOOD_FAULT], "stores": ["mysql"]})
    with pytest.raises(ConfigError, match="stores is a non-empty list"):
        chaos_plan.load_plan(path)
