"""A real zt-agent against a real zt-ra whose per-identity rate limit is hit: the agent waits out
the RA's Retry-After instead of its own short backoff (docs/rate-limits.md), so a rate-limited
agent does not keep knocking on a door the RA said stays shut."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import CaDir, start_ra
from tests.e2e.test_agent import agent_argv, token_file
from tests.e2e.test_agent_rotation import log_events
from zt.clock import parse_rfc3339
from zt.lab import process


def test_rate_limited_renewal_is_retried_no_sooner_than_the_ras_retry_after(ca: CaDir, tmp_path: Path) -> None:
    # Two issuances per identity per 30 s: the bootstrap and the first renewal pass, the second
    # renewal (about 6 s in) is refused with a Retry-After of about 24 s.
    ra = start_ra(ca, tmp_path, "--rate-issue", "2/30s")
    out = tmp_path / "out"
    argv = agent_argv(ra, "a", out, token_file(ca, "a", tmp_path), "--ttl", "30", "--renew-at", "0.1", "--jitter", "0")
    agent = process.start("agent", argv, tmp_path / "agent.log")
    try:
        process.wait_until(
            "a rate-limited renewal", lambda: bool(log_events(agent, "renewal_failed")), timeout=30, proc=agent
        )
        failed = log_events(agent, "renewal_failed")[0]
        assert "429" in str(failed["reason"]) and "rate_limited" in str(failed["reason"]), failed
        retry_after = failed["retry_after"]
        assert isinstance(retry_after, float) and 15 <= retry_after <= 30, failed
        wait = (parse_rfc3339(str(failed["retry_at"])) - parse_rfc3339(str(failed["ts"]))).total_seconds()
        # rfc3339 is whole seconds: the agent's own backoff here would be 2 s (its second step;
        # a tenth of the 24 s left is more); waiting out the RA's answer is >= 13 s.
        assert wait >= retry_after - 1.5, (wait, failed)
        # Our own backoff would have retried (and failed) several times within 6 s.
        time.sleep(6)
        assert len(log_events(agent, "renewal_failed")) == 1, "retried before the RA's Retry-After"
        assert agent.alive()
    finally:
        agent.stop()
        ra.proc.stop()
