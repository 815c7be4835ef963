"""`zt-crl`: serve the intermediate's current CRL over plain HTTP."""

from __future__ import annotations

import logging
import resource
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from zt import logjson, options
from zt.crl.longpoll import DEFAULT_MAX_WAIT, WATCH_INTERVAL, CrlGenerations
from zt.durations import host_port, parse_duration
from zt.errors import ConfigError, ZtError
from zt.httpedge import EdgeConfig, add_edge_arguments, limits_from
from zt.logjson import log_event

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("zt.crl")

# Every agent waiting on a long-poll holds one connection for up to --max-wait, so the cap is
# a fleet size, not a burst size: 10,000 lets a fleet of thousands of agents wait at once (the
# RA keeps 1,000: its requests are short). Measured with 1,000 waiters held against a real
# zt-crl (tests/e2e/test_crl_longpoll_scale.py, docs/crl-publisher.md): about 29 KiB of RSS per
# held connection and no CPU measurable beyond the idle process's, so 10,000 held bound the
# memory at about 300 MiB; each connection is also one descriptor (_raise_descriptor_limit).
DEFAULT_MAX_CONNECTIONS = 10_000
DESCRIPTORS_SPARE = 64  # the listening socket, the log, the CRL file, the thread pool's


def _raise_descriptor_limit(max_connections: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE towards the connection cap, as far as the hard limit allows.

    The soft limit is often 1024: with it, the 1,000th or so waiting agent would make accept(2)
    fail with EMFILE instead of being held or answered 503 over_capacity. Returns (soft, hard)
    after the change; the start log records them.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + DESCRIPTORS_SPARE
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError) as e:
            log_event(log, "descriptor_limit_unchanged", logging.WARNING, soft=soft, hard=hard, reason=str(e))
    return soft, hard


def build_parser() -> options.LayeredParser:
    p = options.LayeredParser(
        prog="zt-crl",
        description="zt CRL publisher: serves <ca-dir>/crl/crl.der at /crl "
        "(DER) and /crl.pem, with ETag and Cache-Control. Needs no key.",
    )
    p.add_argument("--ca-dir", type=Path, default=Path("ca"), help="CA directory (default: ca)")
    p.add_argument("--crl-dir", type=Path, help="directory holding crl.der (default: <ca-dir>/crl)")
    p.add_argument(
        "--listen",
        type=host_port,
        default=("127.0.0.1", 8444),
        metavar="HOST:PORT",
        help="HTTP listen address (default: 127.0.0.1:8444)",
    )
    p.add_argument(
        "--max-age", type=int, default=5, help="Cache-Control max-age in seconds, never past nextUpdate (default: 5)"
    )
    p.add_argument(
        "--max-wait",
        type=int,
        default=DEFAULT_MAX_WAIT,
        help="longest long-poll hold in seconds: a conditional GET with Prefer: wait=N waits "
        f"min(N, this) for a new CRL; 0 turns long-poll off (default: {DEFAULT_MAX_WAIT})",
    )
    p.add_argument(
        "--watch-interval",
        type=parse_duration,
        default=parse_duration(f"{WATCH_INTERVAL:g}s"),
        help="how often the long-poll watcher stats the CRL file, e.g. 0.1s; a new CRL reaches "
        f"held requests within this (default: {WATCH_INTERVAL:g}s)",
    )
    add_edge_arguments(p, max_connections=DEFAULT_MAX_CONNECTIONS)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = options.parse(build_parser(), argv, "ZT_CRL")
        limits = limits_from(args)
        if args.max_wait < 0:
            raise ConfigError(f"--max-wait must be 0 or more seconds (got {args.max_wait})")
        watch_interval = args.watch_interval.total_seconds()
        if not 0 < watch_interval <= 60:
            raise ConfigError(f"--watch-interval must be more than 0 and at most 60s (got {watch_interval:g}s)")
    except ZtError as e:
        print(f"zt-crl: {e}", file=sys.stderr)
        return 2
    logjson.setup("zt-crl", args.log_level)
    from zt.crl.app import create_app

    crl_dir: Path = args.crl_dir or args.ca_dir / "crl"
    host, port = args.listen
    soft, hard = _raise_descriptor_limit(limits.max_connections)
    log_event(
        log,
        "start",
        listen=f"{host}:{port}",
        crl=str(crl_dir / "crl.der"),
        max_age=args.max_age,
        header_timeout_seconds=limits.header_timeout,
        max_connections=limits.max_connections,
        max_wait=args.max_wait,
        watch_interval_seconds=watch_interval,
        descriptor_limit=soft,
        descriptor_hard_limit=hard,
    )
    app = create_app(crl_dir / "crl.der", args.max_age, max_wait=args.max_wait, watch_interval=watch_interval)
    config = EdgeConfig(
        app,
        limits,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=3,
    )
    _releasing_server(config, app.state.generations).run()
    log_event(log, "stop", reason="signal")
    return 0


def _releasing_server(config: EdgeConfig, generations: CrlGenerations) -> uvicorn.Server:
    """uvicorn's Server, ending the long-poll waits first when it shuts down.

    uvicorn waits up to `timeout_graceful_shutdown` for in-flight requests, and a held request
    would use all of it; released waiters answer 304 at once, so a stop is immediate.
    """
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            generations.release()
            await super().shutdown(sockets)

    return Server(config)


if __name__ == "__main__":
    sys.exit(main())
