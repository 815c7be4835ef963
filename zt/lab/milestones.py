"""The lab's milestones, in one registry: number, title, exit criteria, scenario module.

`zt-lab run --milestone all` runs every milestone registered here, and judges every one of
its criteria. A registered milestone whose scenario module does not exist yet still appears
in the report: each of its criteria `unknown` (no evidence, with a note saying why), which
fails the run, so a milestone cannot pass by having nothing to run. Milestones 2 to 5 are
registered by the issues that bring their scenarios.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from zt.lab import checkers, checks_chaos, checks_m2, checks_m3, checks_m3_crl, checks_m4, checks_m5
from zt.lab.checkers import Criterion, Verdict
from zt.lab.history import History

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Milestone:
    number: int
    title: str
    criteria: tuple[Criterion, ...]
    # The pytest modules that produce the evidence, relative to the repository. Each module runs
    # on a lab of its own (its module-level LAB_TOPOLOGY, or the default topology), so a scenario
    # that stops a component or shortens lifetimes cannot disturb another's evidence.
    scenarios: tuple[Path, ...]

    def scenario_paths(self, repo: Path = REPO) -> list[Path]:
        """The modules that exist; a missing one leaves its criteria without evidence (UNKNOWN)."""
        return [repo / s for s in self.scenarios if (repo / s).is_file()]

    def missing_scenarios(self, repo: Path = REPO) -> list[Path]:
        return [s for s in self.scenarios if not (repo / s).is_file()]

    def has_scenario(self, repo: Path = REPO) -> bool:
        return bool(self.scenario_paths(repo))


REGISTRY: dict[int, Milestone] = {
    1: Milestone(
        1,
        "service-a and service-b call each other over mTLS with certificates from our CA",
        checkers.M1,
        (Path("scenarios/test_m1_mtls.py"),),
    ),
    2: Milestone(
        2,
        "rotation under load: every service rotates at least five times and not one request fails",
        checks_m2.M2,
        (Path("scenarios/test_m2_rotation.py"),),
    ),
    3: Milestone(
        3,
        "revocation end to end: a revoked certificate is refused on new and open connections, on both stacks",
        checks_m3.M3 + checks_m3_crl.M3_CRL,
        (
            Path("scenarios/test_m3_revocation.py"),
            Path("scenarios/test_m3_stale_crl.py"),
            Path("scenarios/test_m3_large_crl.py"),
        ),
    ),
    4: Milestone(
        4,
        "observability: one log schema, events in the logs, metrics through a real Prometheus, a verified audit",
        checks_m4.M4,
        (Path("scenarios/test_m4_observability.py"),),
    ),
    5: Milestone(
        5,
        "hardening: a mesh policy both stacks enforce, RA rate limits across workers, token lockout, a pinned bundle",
        checks_m5.M5,
        (Path("scenarios/test_m5_hardening.py"),),
    ),
}


# Runs selected by name only, never by `all`: the chaos run (docs/chaos.md) is a few minutes of
# faults on a lab of its own, a CI step of its own; `all` stays the design's milestones.
NAMED: dict[str, Milestone] = {
    "chaos": Milestone(
        checks_chaos.MILESTONE,
        "chaos: faults on every edge through a real toxiproxy, each healed, and nothing lost",
        checks_chaos.CHAOS,
        (Path("scenarios/test_chaos.py"),),
    ),
    "kills": Milestone(
        checks_chaos.MILESTONE_KILLS,
        "kills: the RA killed (SIGKILL) during renewals under load and an agent killed mid-write; nothing lost or torn",
        checks_chaos.KILLS,
        (Path("scenarios/test_chaos_kills.py"),),
    ),
    "replicas": Milestone(
        checks_chaos.MILESTONE_REPLICAS,
        "replicas: two RA replicas on PostgreSQL, one killed under load; agents fail over, nothing lost",
        checks_chaos.REPLICAS,
        (Path("scenarios/test_replica_kill.py"),),
    ),
}


def by_number(n: int, registry: Mapping[int, Milestone] = REGISTRY) -> Milestone | None:
    """A registered milestone or a named run by its number in reports."""
    return registry.get(n) or next((m for m in NAMED.values() if m.number == n), None)


def select(
    spec: str, registry: Mapping[int, Milestone] = REGISTRY, named: Mapping[str, Milestone] = NAMED
) -> list[Milestone]:
    """`all` (every registered milestone, in order), one registered number, or a named run
    (`chaos`, not part of `all`); several of these joined by commas (`all,chaos`: one run, so
    `--parallel` spreads all of them over its labs at once); ValueError otherwise."""
    if "," in spec:
        out: list[Milestone] = []
        for part in spec.split(","):
            out += [m for m in select(part.strip(), registry, named) if m not in out]
        return out
    if spec == "all":
        return [registry[n] for n in sorted(registry)]
    if spec in named:
        return [named[spec]]
    try:
        return [registry[int(spec)]]
    except (ValueError, KeyError):
        known = ", ".join([*map(str, sorted(registry)), *named])
        raise ValueError(f"no milestone {spec!r}: the lab defines {known} (or all)") from None


def judge(selected: Sequence[Milestone], history: History, repo: Path = REPO) -> list[Verdict]:
    """Every criterion of every selected milestone, judged on the run's history."""
    verdicts = []
    for m in selected:
        missing = ", ".join(map(str, m.missing_scenarios(repo)))
        note = f"no scenario yet: {missing} does not exist" if missing else None
        verdicts += [checkers.check(c, history, note=note) for c in m.criteria]
    return verdicts
