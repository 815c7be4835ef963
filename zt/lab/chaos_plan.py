"""Fault plans as data (`chaos/*.json`), and the seeded schedule that lays them out in time.

A plan names the faults it injects and nothing else: which edge (zt.lab.edges), which toxic,
when it starts in the plan's slot (plus a seeded random delay of up to `start_jitter`), how
long it lasts, and its heal step. The checkers of a plan (zt.lab.checks_chaos) know what the
plan is for; the plan file says what is done to the network. Toxics, as toxiproxy has them:

    down        the proxy is disabled: its listener closed, open connections cut   heal: enable
    latency     {"latency": ms, "jitter": ms} on every chunk                       heal: remove
    timeout     {"timeout": ms}: data stops; closed after ms (0: never)            heal: remove
    reset_peer  {"timeout": ms}: connections reset (RST) after ms                  heal: remove
    bandwidth   {"rate": KB/s}                                                      heal: remove
    slicer      {"average_size": bytes, "size_variation": bytes, "delay": us}      heal: remove
    kill        a process, not a proxy: `edge` names a component ("ra", or         heal: restart
                "agent-<service>"), SIGKILLed by PID; the heal starts it again on
                the same port, store and certificate directory (plan 6)

The schedule: one chaos run drives one load, and the selected plans run one after another,
each in a slot of its own (its faults, then `recovery` seconds in which its criteria watch the
system come back), after `warmup` seconds of load without faults. Plans never overlap, so each
plan's criteria judge exactly the requests of its own slot. The random part (each fault's
start delay) is drawn from `random.Random(seed)`: the same seed and the same plans give the
same schedule, which is how a failing run is replayed (`zt-lab run --milestone chaos --seed N`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zt.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PLANS_DIR = REPO / "chaos"

# toxic type -> the attributes it needs (toxiproxy v2.5's names) and its only valid heal step.
TOXICS: dict[str, tuple[frozenset[str], str]] = {
    "down": (frozenset(), "enable"),
    "latency": (frozenset({"latency", "jitter"}), "remove"),
    "timeout": (frozenset({"timeout"}), "remove"),
    "reset_peer": (frozenset({"timeout"}), "remove"),
    "bandwidth": (frozenset({"rate"}), "remove"),
    "slicer": (frozenset({"average_size", "size_variation", "delay"}), "remove"),
    "kill": (frozenset(), "restart"),
}
# The faults that hit a process (zt.lab.nemesis asks the lab, not toxiproxy).
PROCESS_TOXICS = frozenset({"kill"})
STREAMS = ("upstream", "downstream")
STORES = ("sqlite", "postgres")


@dataclass(frozen=True)
class Fault:
    edge: str  # "agent->ra", "service-a->service-b", ... (zt.lab.edges)
    toxic: str  # a key of TOXICS
    start: float  # seconds after the plan's slot begins
    duration: float  # seconds until the heal step
    heal: str  # "enable" (a proxy that was down) or "remove" (the toxic)
    start_jitter: float = 0.0  # up to this many seconds later, drawn from the seed
    stream: str = "downstream"
    attributes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    name: str  # the file's stem: "ra-down"
    priority: int  # the numbering of the plans; also their order in a run
    title: str
    faults: tuple[Fault, ...]
    recovery: float  # seconds after the last heal that still belong to this plan's slot
    action: str | None = None  # a step the scenario takes inside the fault ("revoke")
    # The lab stores it means something on (Topology.store): a plan against "the RA" is about one
    # RA on SQLite; with two replicas on PostgreSQL the agents fail over instead (replica-kill).
    stores: tuple[str, ...] = STORES

    def slot_seconds(self) -> float:
        return max(f.start + f.start_jitter + f.duration for f in self.faults) + self.recovery


@dataclass(frozen=True)
class ScheduledFault:
    """A fault at its wall-clock place in one run: the plan's, moved by the seed."""

    plan: str
    index: int  # the fault's position in its plan
    fault: Fault
    at: float  # seconds after the load started
    until: float  # its heal, seconds after the load started

    @property
    def id(self) -> str:
        return f"{self.plan}#{self.index}"


@dataclass(frozen=True)
class Slot:
    plan: Plan
    begin: float  # seconds after the load started
    end: float
    faults: tuple[ScheduledFault, ...]


@dataclass(frozen=True)
class Schedule:
    seed: int
    warmup: float
    slots: tuple[Slot, ...]
    tail: float  # load after the last slot

    @property
    def load_seconds(self) -> int:
        end = self.slots[-1].end if self.slots else self.warmup
        return int(end + self.tail + 0.999)

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "warmup_s": self.warmup,
            "load_s": self.load_seconds,
            "slots": [
                {
                    "plan": s.plan.name,
                    "priority": s.plan.priority,
                    "begin_s": round(s.begin, 2),
                    "end_s": round(s.end, 2),
                    "faults": [
                        {
                            "id": f.id,
                            "edge": f.fault.edge,
                            "toxic": f.fault.toxic,
                            "attributes": f.fault.attributes,
                            "at_s": round(f.at, 2),
                            "heal_s": round(f.until, 2),
                            "heal": f.fault.heal,
                        }
                        for f in s.faults
                    ],
                }
                for s in self.slots
            ],
        }


def _fault(doc: Any, where: str) -> Fault:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: a fault is an object")
    unknown = set(doc) - {"edge", "toxic", "start", "start_jitter", "duration", "heal", "stream", "attributes"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    try:
        toxic = str(doc["toxic"])
        edge, heal = str(doc["edge"]), str(doc["heal"])
        start, duration = float(doc["start"]), float(doc["duration"])
    except KeyError as e:
        raise ConfigError(f"{where}: missing {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    if toxic not in TOXICS:
        raise ConfigError(f"{where}: toxic {toxic!r} is not one of {', '.join(TOXICS)}")
    needs, heal_step = TOXICS[toxic]
    if heal != heal_step:
        raise ConfigError(f"{where}: the heal step of {toxic!r} is {heal_step!r}, not {heal!r}")
    attributes = doc.get("attributes", {})
    if not isinstance(attributes, dict) or not all(isinstance(v, int) for v in attributes.values()):
        raise ConfigError(f"{where}: attributes are an object of integers")
    if set(attributes) != needs:
        raise ConfigError(f"{where}: {toxic} takes exactly {sorted(needs)}, got {sorted(attributes)}")
    stream = str(doc.get("stream", "downstream"))
    if stream not in STREAMS:
        raise ConfigError(f"{where}: stream is upstream or downstream, not {stream!r}")
    if toxic in PROCESS_TOXICS and not (edge == "ra" or (edge.startswith("agent-") and ">" not in edge)):
        raise ConfigError(f"{where}: a {toxic} fault names a component (ra, agent-<service>), not {edge!r}")
    jitter = float(doc.get("start_jitter", 0.0))
    if start < 0 or jitter < 0 or not 0 < duration <= 120:
        raise ConfigError(f"{where}: start and start_jitter >= 0, duration in (0, 120] seconds")
    return Fault(edge, toxic, start, duration, heal, jitter, stream, dict(attributes))


def load_plan(path: Path) -> Plan:
    """A plan file, fully validated: a bad plan is a ConfigError naming the file and the key."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a plan is a JSON object")
    unknown = set(doc) - {"priority", "title", "faults", "recovery", "action", "stores"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    faults = doc.get("faults")
    if not isinstance(faults, list) or not faults:
        raise ConfigError(f"{path}: faults is a non-empty list")
    try:
        priority, title, recovery = int(doc["priority"]), str(doc["title"]), float(doc["recovery"])
    except KeyError as e:
        raise ConfigError(f"{path}: missing {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from None
    action = doc.get("action")
    if action is not None and action not in ("revoke",):
        raise ConfigError(f"{path}: action {action!r} is not one the scenario knows (revoke)")
    stores = doc.get("stores", list(STORES))
    if not isinstance(stores, list) or not stores or not set(stores) <= set(STORES):
        raise ConfigError(f"{path}: stores is a non-empty list of {', '.join(STORES)}")
    return Plan(
        path.stem,
        priority,
        title,
        tuple(_fault(f, f"{path} faults[{i}]") for i, f in enumerate(faults)),
        recovery,
        action,
        tuple(stores),
    )


def load_plans(names: list[str] | None = None, directory: Path = PLANS_DIR, store: str | None = None) -> list[Plan]:
    """Every plan in `directory` (or the named ones), by priority; with `store`, only the plans
    for that store (a named plan that is not for it is refused)."""
    files = sorted(directory.glob("*.json"))
    known = {f.stem: f for f in files}
    if names:
        missing = [n for n in names if n not in known]
        if missing:
            raise ConfigError(f"no plan {', '.join(missing)} in {directory}: there are {', '.join(known)}")
        files = [known[n] for n in names]
    plans = sorted((load_plan(f) for f in files), key=lambda p: (p.priority, p.name))
    if store is not None and names:
        wrong = [p.name for p in plans if store not in p.stores]
        if wrong:
            raise ConfigError(f"plan {', '.join(wrong)} does not run on store {store}")
    return [p for p in plans if store is None or store in p.stores]


def schedule(plans: list[Plan], seed: int, *, warmup: float = 8.0, tail: float = 4.0) -> Schedule:
    """The plans one after another from `warmup` on, each fault's start moved by the seed."""
    rng = random.Random(seed)
    slots = []
    t = warmup
    for plan in plans:
        scheduled = []
        for i, f in enumerate(plan.faults):
            at = t + f.start + rng.uniform(0, f.start_jitter)
            scheduled.append(ScheduledFault(plan.name, i, f, at, at + f.duration))
        end = max(t + plan.slot_seconds(), max(s.until for s in scheduled) + plan.recovery)
        slots.append(Slot(plan, t, end, tuple(scheduled)))
        t = end
    return Schedule(seed, warmup, tuple(slots), tail)
