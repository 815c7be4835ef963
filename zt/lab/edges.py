"""The edges of a chaos lab: every connection between components that runs through toxiproxy.

An edge is named for who talks to whom (`agent->ra`, `service-a->service-b`, `load->service-b`)
and is one toxiproxy proxy (named without the arrow, as toxiproxy wants plain names). With
`Topology(chaos=True)` a runtime starts toxiproxy first, creates one proxy per edge, and hands
each client the proxy's address instead of its server's: the agents' `--ra` and the CRL
distribution point in every certificate (`ztca init --crl-url`), each service's URL for the
other service's `/call`, and each service's URL for the load generator. The lab's own probes
(readiness, counters, the revocation probes) keep talking to the components directly, so a
fault on an edge is a fault between components, never blindness of the lab.
"""

from __future__ import annotations

from dataclasses import dataclass

from zt.lab.topology import Topology


@dataclass(frozen=True)
class Edge:
    name: str  # "agent->ra": how fault plans name it
    proxy: str  # the toxiproxy proxy: "agent-ra"
    upstream: str  # the component port it forwards to, as the runtime's ports name it ("ra", "service-b:tls")


def chaos_edges(topology: Topology) -> list[Edge]:
    """Every edge of the topology's lab: agent->RA, agent->CRL publisher, each service to each
    other service (one proxy per callee: with two services, one per direction), load->each service."""
    edges = [Edge("agent->ra", "agent-ra", "ra"), Edge("agent->crl", "agent-crl", "crl")]
    names = [s.name for s in topology.services]
    for callee in names:
        for caller in names:
            if caller != callee:
                edges.append(Edge(f"{caller}->{callee}", f"mesh-{callee}", f"{callee}:tls"))
    edges += [Edge(f"load->{n}", f"load-{n}", f"{n}:tls") for n in names]
    return edges


def edge(topology: Topology, name: str) -> Edge:
    for e in chaos_edges(topology):
        if e.name == name:
            return e
    known = ", ".join(e.name for e in chaos_edges(topology))
    raise KeyError(f"no edge {name!r} in this lab: {known}")
