"""`zt-ra`: run the registration authority (HTTPS, one or more worker processes)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path

from zt import logjson, options
from zt.clock import SystemClock
from zt.durations import host_port, parse_duration
from zt.errors import ConfigError, StoreError, ZtError
from zt.httpedge import EdgeConfig, add_edge_arguments, limits_from
from zt.logjson import log_event
from zt.ra.limits import Limits, LockoutPolicy, parse_rate
from zt.ra.settings import ENV_SETTINGS, MAX_LEAF_TTL, RaSettings

log = logging.getLogger("zt.ra")

# The recorder opens the store and binds its socket in well under a second; a start that
# takes this long has failed.
RECORDER_START_TIMEOUT = 30.0
RECORDER_STOP_TIMEOUT = 10.0
RECORDER_BACKOFF_MIN = 0.2


def build_parser() -> options.LayeredParser:
    p = options.LayeredParser(
        prog="zt-ra",
        description="zt registration authority: issues SPIFFE X509-SVIDs "
        "over HTTPS to workloads holding a bootstrap token or a current certificate.",
    )
    p.add_argument("--ca-dir", type=Path, default=Path("ca"), help="CA directory made by 'ztca init' (default: ca)")
    p.add_argument(
        "--store",
        metavar="URL",
        help="the state store: a path or sqlite:///path, or postgresql://... shared by several RA replicas "
        "(docs/scaling.md; default: the CA directory's SQLite file)",
    )
    p.add_argument(
        "--listen",
        type=host_port,
        default=("127.0.0.1", 8443),
        metavar="HOST:PORT",
        help="HTTPS listen address (default: 127.0.0.1:8443)",
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the store (default: 1)")
    p.add_argument(
        "--leaf-ttl",
        type=parse_duration,
        default=parse_duration("1h"),
        help="default and maximum leaf lifetime, e.g. 1h, 5m; 30s to 366d (default: 1h)",
    )
    p.add_argument("--crl-url", help="CRL distribution point put in leaves (default: the one given to ztca init)")
    p.add_argument(
        "--crl-check-interval",
        type=float,
        default=10.0,
        help="seconds between checks whether the CRL must be re-issued (default: 10)",
    )
    p.add_argument(
        "--server-name",
        action="append",
        default=None,
        metavar="NAME",
        help="DNS name (FQDN) or IP for the RA's TLS certificate; repeatable (default: 127.0.0.1)",
    )
    p.add_argument(
        "--server-cert-ttl",
        type=parse_duration,
        default=parse_duration("7d"),
        help="lifetime of the RA's own TLS certificate, re-issued at every start (default: 7d)",
    )
    p.add_argument("--max-body", type=int, default=64 * 1024, help="largest request body in bytes (default: 65536)")
    add_edge_arguments(p)
    p.add_argument(
        "--durability",
        choices=["full", "normal"],
        default="full",
        help="store fsync level: full survives power loss, normal survives a process kill (default: full)",
    )
    add_limit_arguments(p)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--audit-stdout",
        action="store_true",
        help="also write every audit log line (CA_DIR/audit.jsonl, docs/audit.md) to stdout, for a log aggregator",
    )
    return p


def add_limit_arguments(p: options.LayeredParser) -> None:
    """Rate limits and token lockout (docs/rate-limits.md); 0 turns each off."""
    p.add_argument(
        "--rate-issue",
        type=parse_rate,
        default=parse_rate("10/1m"),
        metavar="N/PERIOD",
        help="certificates per identity on /v1/issue and /v1/renew together, e.g. 10/1m; 0: no limit (default: 10/1m)",
    )
    p.add_argument(
        "--rate-source",
        type=parse_rate,
        default=parse_rate("600/1m"),
        metavar="N/PERIOD",
        help="requests per source address (TCP peer) on every endpoint; 0: no limit (default: 600/1m)",
    )
    p.add_argument(
        "--lockout-threshold",
        type=int,
        default=5,
        help="failed bootstrap- or admin-token attempts from one source before it is locked out; 0: never (default: 5)",
    )
    p.add_argument(
        "--lockout-base",
        type=parse_duration,
        default=parse_duration("1s"),
        help="first lockout, doubled at every further failure (default: 1s)",
    )
    p.add_argument(
        "--lockout-max",
        type=parse_duration,
        default=parse_duration("15m"),
        help="longest lockout; also the quiet time after which failures are forgotten (default: 15m)",
    )


def limits_of(args: argparse.Namespace) -> Limits:
    try:
        lockout = LockoutPolicy(
            args.lockout_threshold, args.lockout_base.total_seconds(), args.lockout_max.total_seconds()
        )
    except ValueError as e:
        raise ConfigError(str(e)) from e
    return Limits(args.rate_issue, args.rate_source, lockout)


def settings_from(args: argparse.Namespace) -> RaSettings:
    host, port = args.listen
    limits = limits_from(args)
    if args.leaf_ttl > MAX_LEAF_TTL:
        raise ConfigError(f"--leaf-ttl must be at most {MAX_LEAF_TTL.days}d")
    names = tuple(args.server_name or ["127.0.0.1"])
    if host not in ("0.0.0.0", "::", "") and host not in names:
        names += (host,)
    return RaSettings(
        ca_dir=args.ca_dir.resolve(),
        store=args.store or None,
        host=host,
        port=port,
        workers=max(1, args.workers),
        leaf_ttl=args.leaf_ttl,
        crl_url=args.crl_url,
        crl_check_interval=args.crl_check_interval,
        server_names=names,
        server_cert_ttl=args.server_cert_ttl,
        max_body=args.max_body,
        header_timeout=limits.header_timeout,
        max_connections=limits.max_connections,
        durable=args.durability == "full",
        log_level=args.log_level,
        audit_stdout=bool(args.audit_stdout),
        limits=limits_of(args),
    )


def tcp_socket(host: str, port: int) -> socket.socket:
    """The port of the worker processes, bound once by the supervisor (each worker then
    listens on a socket of its own on the same address: zt.httpedge.reuse_port_socket).

    Created with proto=IPPROTO_TCP on purpose: the workers rebuild it from its family, type
    and proto, and asyncio sets TCP_NODELAY only on sockets whose proto says TCP. uvicorn's
    own bind_socket() leaves proto 0, and every response then waits on Nagle + delayed ACK
    (measured: 44 ms per request with two workers, 1 ms with one).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Each worker listens on its own socket in this port's SO_REUSEPORT group (zt.httpedge
    # reuse_port_socket): an even share of connections; this one only holds the port.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def serve(settings: RaSettings, cert: Path, key: Path) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = EdgeConfig(
        "zt.ra.asgi:app_from_env",
        settings.edge_limits,
        reuse_port=settings.workers > 1,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        server_header=False,  # EdgeConfig also turns proxy headers off: the client is the TCP peer
    )
    if settings.workers == 1:
        uvicorn.Server(config).run()
    else:
        Multiprocess(config, sockets=[tcp_socket(settings.host, settings.port)]).run()


class Recorder:
    """The host's recorder process (zt.ra.commit_server), started again if it dies.

    A recorder that dies (a kill, a crash mid-append) fails the issuances waiting on it (503);
    the next one repairs the audit log's tail at its start and serves the workers' next
    issuances. Restarts back off from 0.2 s to 5 s while a recorder keeps dying young."""

    def __init__(self, settings: RaSettings) -> None:
        assert settings.recorder_socket is not None
        self._settings = settings
        self._path = Path(settings.recorder_socket)
        self._stopping = threading.Event()
        self._proc = self._spawn()
        self._wait_ready(self._proc)
        self._watcher = threading.Thread(target=self._watch, name="zt-ra-recorder-watch", daemon=True)
        self._watcher.start()

    def _spawn(self) -> BaseProcess:
        from zt.ra import commit_server

        proc = multiprocessing.get_context("spawn").Process(
            target=commit_server.run,
            args=(self._settings.to_json(), str(self._path), os.getpid()),
            name="zt-ra-recorder",
        )
        proc.start()
        return proc

    def _wait_ready(self, proc: BaseProcess) -> None:
        deadline = time.monotonic() + RECORDER_START_TIMEOUT
        while not self._path.exists():
            if not proc.is_alive():
                raise StoreError(f"the recorder process ended at start (exit code {proc.exitcode}); see its log above")
            if time.monotonic() > deadline:
                _end(proc)
                raise StoreError(f"the recorder process did not start within {RECORDER_START_TIMEOUT:g}s")
            time.sleep(0.01)

    def _watch(self) -> None:
        backoff = RECORDER_BACKOFF_MIN
        while True:
            started = time.monotonic()
            self._proc.join()
            if self._stopping.is_set():
                return
            log_event(log, "recorder_died", logging.ERROR, exit_code=self._proc.exitcode, pid=self._proc.pid)
            backoff = RECORDER_BACKOFF_MIN if time.monotonic() - started > 30 else min(backoff * 2, 5.0)
            if self._stopping.wait(backoff):
                return
            self._proc = self._spawn()
            if self._stopping.is_set():  # zt-ra began to stop while this one started
                _end(self._proc)
                return
            log_event(log, "recorder_started", pid=self._proc.pid)

    def stop(self) -> None:
        """After the workers: it commits and answers what is pending, then ends."""
        self._stopping.set()
        _end(self._proc)
        self._watcher.join(RECORDER_STOP_TIMEOUT)


def _end(proc: BaseProcess) -> None:
    if proc.is_alive() and proc.pid is not None:
        os.kill(proc.pid, signal.SIGTERM)
    proc.join(RECORDER_STOP_TIMEOUT)
    if proc.is_alive():
        proc.kill()
        proc.join()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = options.parse(build_parser(), argv, "ZT_RA")
        settings = settings_from(args)
    except ZtError as e:
        print(f"zt-ra: {e}", file=sys.stderr)
        return 2
    logjson.setup("zt-ra", settings.log_level)
    metrics_dir = tempfile.mkdtemp(prefix="zt-ra-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    # The recorder's socket, in a directory of this run that only our user can enter (0700).
    run_dir = tempfile.mkdtemp(prefix="zt-ra-run-")
    settings = dataclasses.replace(settings, recorder_socket=os.path.join(run_dir, "recorder.sock"))
    os.environ[ENV_SETTINGS] = settings.to_json()
    recorder = None
    try:
        from zt.ra.app import build_ra
        from zt.ra.server_cert import issue_server_certificate

        ra = build_ra(settings, SystemClock())
        # Before serving: set aside a torn last line and append rows a killed writer left
        # behind (zt.auditlog), so the log is whole again from the first request on.
        ra.store.sync_audit()
        files = issue_server_certificate(ra, settings.server_names, settings.server_cert_ttl)
        ra.store.close()
        log_event(
            log,
            "start",
            listen=f"{settings.host}:{settings.port}",
            workers=settings.workers,
            trust_domain=ra.authority.trust_domain,
            server_serial=files.serial,
            server_names=list(settings.server_names),
            leaf_ttl_seconds=settings.leaf_ttl.total_seconds(),
            header_timeout_seconds=settings.header_timeout,
            max_connections=settings.max_connections,
            rate_issue=str(settings.limits.issue),
            rate_source=str(settings.limits.source),
            lockout_threshold=settings.limits.lockout.threshold,
        )
        recorder = Recorder(settings)
        serve(settings, files.cert, files.key)
    except ZtError as e:
        log_event(log, "start_failed", logging.ERROR, reason=str(e))
        print(f"zt-ra: {e}", file=sys.stderr)
        return 1
    finally:
        if recorder is not None:
            recorder.stop()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    log_event(log, "stop", reason="signal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
