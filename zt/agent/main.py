"""`zt-agent`: get this workload an identity and keep it fresh.

    zt-agent --ra https://127.0.0.1:8443 --bundle ca/bundle.pem --token-file token \
             --service service-a --out certs/a [--signal HUP --pid-file a.pid | --touch FILE] [--once] \
             [--agent-pid-file agent.pid] [--metrics-listen 127.0.0.1:9102]
    zt-agent rotate --pid-file agent.pid      # manual rotation: the running agent renews now

Signals: SIGTERM/SIGINT stop the agent; SIGUSR1 makes it renew at once (trigger "manual").
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from cryptography import x509

from zt import logjson, options
from zt.agent.control import ROTATE_SIGNAL, AgentPidFile, rotate_main
from zt.agent.crl_fetch import MAX_CRL_BYTES
from zt.agent.metrics import AgentMetrics, MetricsServer
from zt.agent.ra_client import RaClient
from zt.agent.rotation import DEFAULT_JITTER, DEFAULT_RENEW_FRACTION
from zt.agent.runner import Agent, AgentConfig
from zt.agent.signals import Notifier
from zt.agent.trust import read_pinned_bundle
from zt.clock import SystemClock
from zt.errors import ConfigError, RemoteError, SvidError, ZtError
from zt.logjson import log_event
from zt.pki.keys import KeyType
from zt.spiffe import parse_spiffe_id, workload_id

log = logging.getLogger("zt.agent")


def build_parser() -> options.LayeredParser:
    p = options.LayeredParser(
        prog="zt-agent",
        description="zt node agent: generates the workload's key locally, "
        "bootstraps with a one-time token, renews with proof of the current certificate, "
        "writes the certificate directory atomically, fetches the CRL, signals the service.",
    )
    p.add_argument(
        "--ra",
        action="append",
        required=True,
        metavar="URL",
        help="RA base URL, https://HOST:PORT; repeat it for RA replicas: a connection error or a 5xx "
        "moves to the next one (docs/scaling.md)",
    )
    p.add_argument(
        "--bundle",
        type=Path,
        required=True,
        help="trust bundle (PEM): the only CAs the agent trusts, for the RA and for what it writes",
    )
    p.add_argument("--bundle-sha256", help="pin: the bundle file's SHA-256 (hex, or a sha256sum line)")
    p.add_argument("--token-file", type=Path, help="file holding the one-time bootstrap token")
    p.add_argument("--service", required=True, help="service name; the SPIFFE ID is spiffe://<td>/svc/<service>")
    p.add_argument("--trust-domain", help="trust domain (default: read from the bundle's root certificate)")
    p.add_argument("--out", type=Path, required=True, help="certificate directory to maintain")
    p.add_argument(
        "--key-type",
        choices=[k.value for k in KeyType],
        default=KeyType.EC_P256.value,
        help="key algorithm for the workload's keys (default: ec-p256)",
    )
    p.add_argument("--ttl", type=int, help="ask for this lifetime in seconds (default: the RA's)")
    p.add_argument(
        "--renew-at",
        type=float,
        default=round(DEFAULT_RENEW_FRACTION, 4),
        help="renew at this fraction of the lifetime (default 0.6667: two thirds)",
    )
    p.add_argument(
        "--jitter",
        type=float,
        default=DEFAULT_JITTER,
        help=f"renew up to this fraction of the lifetime earlier, at random (default {DEFAULT_JITTER})",
    )
    p.add_argument(
        "--agent-pid-file",
        type=Path,
        help="write the agent's own PID here (0644, removed at exit), for `zt-agent rotate --pid-file`",
    )
    p.add_argument(
        "--metrics-listen",
        help="serve GET /metrics (Prometheus) and GET /healthz on HOST:PORT (default: no server)",
    )
    p.add_argument("--signal", dest="signal_name", help="signal to send after each write, e.g. HUP (needs --pid-file)")
    p.add_argument("--pid-file", type=Path, help="file with the service's PID, for --signal")
    p.add_argument("--touch", type=Path, help="file to touch after each write (Java service-b watches it)")
    p.add_argument("--crl-url", help="CRL URL (default: the CRL distribution point in the leaf)")
    p.add_argument(
        "--crl-interval",
        type=float,
        default=60.0,
        help="periodic CRL fetch, seconds: the pause after an error, a rejected CRL or a 304 the publisher "
        "answered without holding the request (default: 60)",
    )
    p.add_argument(
        "--crl-wait",
        type=float,
        default=30.0,
        help="long-poll: ask the publisher to hold an unchanged-CRL request this many seconds "
        "(If-None-Match + Prefer: wait=N); 0 turns long-poll off (default: 30)",
    )
    p.add_argument(
        "--token-poll",
        type=float,
        default=1.0,
        help="while our certificate is revoked: seconds between looks at --token-file for a new token (default: 1)",
    )
    p.add_argument(
        "--crl-max-bytes",
        type=int,
        default=MAX_CRL_BYTES,
        help=f"refuse a CRL download larger than this (default: {MAX_CRL_BYTES})",
    )
    p.add_argument("--no-crl", action="store_true", help="do not fetch CRLs")
    p.add_argument("--once", action="store_true", help="bootstrap (and fetch the CRL once), then exit")
    p.add_argument(
        "--bootstrap-timeout",
        type=float,
        default=300.0,
        help="give up bootstrapping after this many seconds of transient failures (default: 300)",
    )
    p.add_argument(
        "--no-renewal-retry",
        action="store_true",
        help="testing only: never retry a failed renewal before the certificate expires "
        "(the chaos lab's deliberately weakened agent, docs/chaos.md)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def trust_domain_of(bundle_pem: bytes) -> str:
    for cert in x509.load_pem_x509_certificates(bundle_pem):
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            continue
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
            try:
                return parse_spiffe_id(uri).trust_domain
            except SvidError:
                continue
    raise ConfigError("cannot tell the trust domain from the bundle; pass --trust-domain")


def check_fractions(renew_at: float, jitter: float) -> None:
    if not 0.0 < renew_at < 1.0:
        raise ConfigError(f"--renew-at must be between 0 and 1 (a fraction of the lifetime), got {renew_at}")
    if not 0.0 <= jitter < renew_at:
        raise ConfigError(f"--jitter must be at least 0 and less than --renew-at ({renew_at}), got {jitter}")


def check_intervals(crl_interval: float, crl_wait: float, token_poll: float) -> None:
    """Bounds that keep the loops from spinning (and the held request from outliving a timeout)."""
    if not 0.1 <= crl_interval <= 86400:
        raise ConfigError(f"--crl-interval must be between 0.1 and 86400 seconds, got {crl_interval}")
    if crl_wait != 0 and not 1 <= crl_wait <= 3600:
        raise ConfigError(f"--crl-wait must be 0 (no long-poll) or between 1 and 3600 seconds, got {crl_wait}")
    if not 0.1 <= token_poll <= 3600:
        raise ConfigError(f"--token-poll must be between 0.1 and 3600 seconds, got {token_poll}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["rotate"]:
        return rotate_main(argv[1:])
    try:
        args = options.parse(build_parser(), argv, "ZT_AGENT")
        logjson.setup("zt-agent", args.log_level)
        bundle = read_pinned_bundle(args.bundle, args.bundle_sha256)
        td = args.trust_domain or trust_domain_of(bundle.pem)
        if args.crl_max_bytes <= 0:
            raise ConfigError("--crl-max-bytes must be positive")
        check_fractions(args.renew_at, args.jitter)
        check_intervals(args.crl_interval, args.crl_wait, args.token_poll)
        spiffe_id = str(workload_id(td, args.service))
        cfg = AgentConfig(
            spiffe_id=spiffe_id,
            out=args.out,
            token_file=args.token_file,
            key_type=KeyType(args.key_type),
            ttl_seconds=args.ttl,
            renew_fraction=args.renew_at,
            jitter=args.jitter,
            crl_url=args.crl_url,
            crl_interval=args.crl_interval,
            crl_wait=args.crl_wait,
            token_poll=args.token_poll,
            fetch_crl=not args.no_crl,
            bootstrap_timeout=args.bootstrap_timeout,
            roots=bundle.roots,
            crl_max_bytes=args.crl_max_bytes,
            service=args.service,
            renewal_retry=not args.no_renewal_retry,
        )
        notifier = Notifier(args.signal_name, args.pid_file, args.touch)
        ra = RaClient(args.ra, bundle.roots)
        clock = SystemClock()
        metrics = AgentMetrics(clock)
        server = MetricsServer(metrics, args.metrics_listen) if args.metrics_listen else None
    except (ZtError, ValueError) as e:
        print(f"zt-agent: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:
        return int(e.code or 0)
    agent = Agent(cfg, ra, notifier, clock, threading.Event(), metrics)

    def on_stop(signum: int, frame: FrameType | None) -> None:
        agent.request_stop()

    def on_rotate(signum: int, frame: FrameType | None) -> None:
        agent.request_rotation()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    # Installed before the pid file exists: SIGUSR1's default action would end the agent.
    signal.signal(ROTATE_SIGNAL, on_rotate)
    pid_file = AgentPidFile(args.agent_pid_file) if args.agent_pid_file else None
    try:
        if pid_file is not None:
            pid_file.write()
        if server is not None:
            server.start()
        start = {
            "spiffe_id": spiffe_id,
            "ra": args.ra[0],  # the first one asked
            "ra_replicas": args.ra,
            "out": str(args.out),
            "once": args.once,
            "bundle_sha256": bundle.sha256,
            "bundle_roots": len(bundle.roots),
            "agent_pid_file": str(args.agent_pid_file) if args.agent_pid_file else None,
            "metrics": server.address if server else None,
        }
        return _serve(agent, args.once, start)
    except ConfigError as e:
        print(f"zt-agent: {e}", file=sys.stderr)
        return 2
    finally:
        agent.close()
        if server is not None:
            server.close()
        if pid_file is not None:
            pid_file.remove()


def _serve(agent: Agent, once: bool, start: dict[str, Any]) -> int:
    """Bootstrap, then (unless `once`) renew and fetch until stopped; the exit code."""
    cfg = agent.cfg
    log_event(log, "start", **start)
    try:
        agent.bootstrap()
        if cfg.fetch_crl:
            agent.fetch_crl_once()  # counted and logged; a failure leaves the last good crl.pem
        if once:
            return 0
        return agent.run()
    except RemoteError as e:
        # The peer's fault, not the operator's: exit 1 (2 is for configuration errors).
        kind = "transient, gave up" if e.is_transient else "permanent, not retried"
        log_event(log, "bootstrap_failed", logging.ERROR, reason=str(e), remote=True, permanent=not e.is_transient)
        print(f"zt-agent: remote error ({kind}): {e}", file=sys.stderr)
        return 1
    except ConfigError as e:  # e.g. no usable identity and no token: the operator's to fix
        log_event(log, "failed", logging.ERROR, reason=str(e))
        print(f"zt-agent: {e}", file=sys.stderr)
        return 2
    except ZtError as e:
        log_event(log, "failed", logging.ERROR, reason=str(e))
        print(f"zt-agent: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
