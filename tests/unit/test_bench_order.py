"""The side-by-side benchmarks' round order (bench.vs_stepca, also bench.limits_cost): no server
may keep the same place in its rounds at one client count, or the machine's drift between the
first and the last run of a round would be read as a difference between the servers."""

from __future__ import annotations

import pytest

from bench.vs_stepca import round_order


@pytest.mark.parametrize("servers", [2, 3, 4])
@pytest.mark.parametrize("clients", [1, 2, 3])
def test_round_order_puts_every_server_in_every_place_at_every_client_count(servers: int, clients: int) -> None:
    names = [f"s{i}" for i in range(servers)]
    for k in range(clients):
        orders = [round_order(names, rnd, k) for rnd in range(servers)]
        assert all(sorted(o) == names for o in orders)
        for place in range(servers):
            assert {o[place] for o in orders} == set(names)
