"""`zt-crl`: serve the intermediate's current CRL over plain HTTP."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from zt import logjson, options
from zt.durations import host_port
from zt.errors import ZtError
from zt.httpedge import EdgeConfig, add_edge_arguments, limits_from
from zt.logjson import log_event

log = logging.getLogger("zt.crl")


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
    add_edge_arguments(p)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = options.parse(build_parser(), argv, "ZT_CRL")
        limits = limits_from(args)
    except ZtError as e:
        print(f"zt-crl: {e}", file=sys.stderr)
        return 2
    logjson.setup("zt-crl", args.log_level)
    import uvicorn

    from zt.crl.app import create_app

    crl_dir: Path = args.crl_dir or args.ca_dir / "crl"
    host, port = args.listen
    log_event(
        log,
        "start",
        listen=f"{host}:{port}",
        crl=str(crl_dir / "crl.der"),
        max_age=args.max_age,
        header_timeout_seconds=limits.header_timeout,
        max_connections=limits.max_connections,
    )
    config = EdgeConfig(
        create_app(crl_dir / "crl.der", args.max_age),
        limits,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=3,
    )
    uvicorn.Server(config).run()
    log_event(log, "stop", reason="signal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
