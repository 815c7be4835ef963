"""What the process and the container runtime share: one lab core, two ways to run it.

The runtimes differ in where a component runs (a local process or a container), how it is
reached (a port on 127.0.0.1 or a published port), and where the CA directory lives (on the
host, or in a volume only the RA container mounts). Everything else is here, once:

- the command lines of the agent and the services (`agent_args`, `service_args`);
- the readiness checks (the RA's /v1/status over TLS that trusts exactly the bundle, HTTP
  /healthz, a service's /healthz then an mTLS handshake), all waited on with the lab's one
  wait helper, `process.wait_until`, which also notices a component that died;
- `LabCore`: identities for the test (registered and bootstrapped by the real agent on the
  host, or made by a foreign CA), the issued certificates, revocation and the collected logs,
  all through `ztca --json` as an operator would, so both runtimes see the system from the
  same outside. A runtime supplies `ztca()` (where the CLI runs) and `register()` (how a
  one-time token lands in a 0600 file).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx

from zt.lab import host_identities, mtls_client, process, secrets_scan
from zt.lab.identity import LabIdentity
from zt.lab.topology import ServiceSpec, Topology

CA_DIR = "{ca}"  # in ztca_exit's arguments: the CA directory, wherever the runtime keeps it


def progress(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


def bundle_pin(ca_dir: Path) -> str:
    """The trust bundle's SHA-256, as `ztca init` published it next to the bundle."""
    return (ca_dir / "bundle.pem.sha256").read_text().split()[0]


def agent_args(
    topology: Topology,
    s: ServiceSpec,
    *,
    ra_url: str,
    bundle: str,
    bundle_sha256: str,
    token: str,
    out: str,
    pid_file: str,
    metrics_listen: str | None = None,
    agent_pid_file: str | None = None,
) -> list[str]:
    """zt-agent's arguments (after the program) for workload `s`: bootstrap with its token, then
    keep renewing into `out`, fetch CRLs, and tell the service (SIGHUP via `pid_file`, or a
    touched file in `out` for a service that watches its directory). With the topology's
    `agent_metrics`, also its metrics listener and its own PID file (for manual rotation)."""
    argv = [
        "--ra",
        ra_url,
        "--bundle",
        bundle,
        "--bundle-sha256",
        bundle_sha256,
        "--token-file",
        token,
        "--service",
        s.name,
        "--out",
        out,
        "--crl-interval",
        str(topology.crl_interval),
    ]
    if topology.agent_ttl_seconds:
        argv += ["--ttl", str(topology.agent_ttl_seconds)]
    if topology.agent_renew_at is not None:
        argv += ["--renew-at", str(topology.agent_renew_at)]
    if topology.agent_metrics and metrics_listen and agent_pid_file:
        argv += ["--metrics-listen", metrics_listen, "--agent-pid-file", agent_pid_file]
    if s.name in topology.weak_agents:  # a deliberately weakened agent (the chaos lab's negative test)
        argv.append("--no-renewal-retry")
    if s.reload == "signal":
        argv += ["--signal", "HUP", "--pid-file", pid_file]
    else:
        argv += ["--touch", f"{out}/reload.stamp"]
    return argv


def service_args(
    *,
    name: str,
    cert_dir: str,
    listen: str,
    metrics_listen: str,
    expect_peer: str,
    crl_stale: str,
    pid_file: str | None,
    no_reload: bool = False,
    policy: str | None = None,
) -> list[str]:
    """A native service's arguments (after the binary); both services take the same flags."""
    argv = [
        "--cert-dir",
        cert_dir,
        "--listen",
        listen,
        "--metrics-listen",
        metrics_listen,
        "--expect-peer",
        expect_peer,
        "--name",
        name,
        "--crl-stale",
        crl_stale,
    ]
    if pid_file is not None:
        argv += ["--pid-file", pid_file]
    if no_reload:  # a deliberately broken reload (Topology.no_reload)
        argv.append("--no-reload")
    if policy is not None:  # the lab's copy of deploy/mesh-policy.json
        argv += ["--policy", policy]
    return argv


def http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code == 200


def ra_status_ok(ra_url: str, bundle: Path) -> bool:
    """The RA answers /v1/status over TLS whose server certificate chains to the bundle (only)."""
    tls: ssl.SSLContext = mtls_client.context(bundle, None, check_hostname=True)
    return httpx.get(ra_url + "/v1/status", verify=tls, timeout=2).status_code == 200


def wait_service(
    name: str,
    watched: process.Watched,
    metrics_url: str,
    tls_host: str,
    tls_port: int,
    bundle: Path,
    probe: LabIdentity | None,
    *,
    timeout: float = 60.0,
) -> None:
    """A service is ready when its /healthz answers and (with a probe identity) an mTLS
    handshake with it completes; if it exits meanwhile, the wait fails at once."""
    process.wait_until(f"{name} /healthz", lambda: http_ok(metrics_url + "/healthz"), timeout=timeout, proc=watched)
    if probe is not None:
        process.wait_until(
            f"{name} mTLS handshake",
            lambda: mtls_client.handshake_ok(tls_host, tls_port, bundle, probe),
            timeout=30,
            proc=watched,
        )


class LabCore:
    """The part of a running lab that does not depend on the runtime (see the module doc)."""

    runtime_name = "?"

    def __init__(self, topology: Topology, work_dir: Path) -> None:
        self.topology = topology
        self.work_dir = work_dir
        self.ca_dir = work_dir / "ca"  # the process runtime's CA; the container runtime's public copy
        self.logs = work_dir / "logs"  # logs of what runs on the host
        self._clients: dict[str, LabIdentity] = {}

    # -- what a runtime supplies -------------------------------------------------------------

    def ztca(self, *args: str) -> dict[str, Any]:
        """`ztca VERB --dir <the CA> --json ...` wherever the CA is; its JSON answer."""
        raise NotImplementedError

    def register(self, name: str, token_file: Path) -> None:
        """Register `name` with the CA; its one-time token into `token_file` (0600)."""
        raise NotImplementedError

    def ra_url(self) -> str:
        raise NotImplementedError

    def _component_logs(self, dest: Path) -> list[Path]:
        """Logs the runtime keeps elsewhere than `self.logs` (a container engine's)."""
        return []

    def ztca_exit(self, *args: str) -> tuple[int, str]:
        """`ztca ARGS` as given (CA_DIR replaced by the CA directory), where the CA is: its exit
        code and its output (stdout, then stderr), for verbs judged by their exit code."""
        raise NotImplementedError

    def ca_file(self, name: str) -> bytes:
        """A file of the CA directory (e.g. `audit.jsonl`), read where the CA is."""
        raise NotImplementedError

    def _runtime_secrets(self) -> list[secrets_scan.Secret]:
        """Secrets the runtime keeps outside the work directory (in container volumes)."""
        return []

    def secrets(self) -> list[secrets_scan.Secret]:
        """Every secret this lab created: keys, tokens, keystore passwords (zt.lab.secrets_scan)."""
        return secrets_scan.in_dir(self.work_dir, skip=[self.logs]) + self._runtime_secrets()

    # -- shared ------------------------------------------------------------------------------

    def bundle(self) -> Path:
        return self.ca_dir / "bundle.pem"

    def client_identity(self, name: str, *, ttl_seconds: int | None = None) -> LabIdentity:
        """A registered identity for the test, bootstrapped by the real agent on the host over
        the RA's address as the host reaches it."""
        if name not in self._clients:
            token = self.work_dir / "run" / f"client-{name}.token"
            token.parent.mkdir(parents=True, exist_ok=True)
            self.register(name, token)
            self._clients[name] = host_identities.bootstrap_with_agent(
                self.ra_url(),
                self.bundle(),
                token,
                name,
                self.topology.spiffe_id(name),
                self.work_dir / "clients" / name,
                ttl_seconds=ttl_seconds,
                log=self.logs / "host-agents.log",
            )
        return self._clients[name]

    def foreign_identity(self, name: str) -> LabIdentity:
        """Same trust domain name and SPIFFE ID shape, an unrelated root: made on the host."""
        return host_identities.foreign_identity(self.work_dir, self.topology.trust_domain, name)

    def issued_certificates(self) -> list[str]:
        """Every certificate the CA issued, as `ztca list --pem` reports them."""
        return [str(c["pem"]) for c in self.ztca("list", "--pem")["certificates"]]

    def revoke(
        self, *, serial: str | None = None, service: str | None = None, reason: str | None = None
    ) -> dict[str, Any]:
        if (serial is None) == (service is None):
            raise host_identities.LabError("revoke: give exactly one of serial or service")
        args = ["revoke", serial] if serial is not None else ["revoke", "--service", str(service)]
        if reason:
            args += ["--reason", reason]
        return self.ztca(*args)

    def bench_crl(self, entries: int) -> dict[str, Any]:
        """`ztca bench-crl`: `entries` revocations of never-issued serials, in force at once."""
        return self.ztca("bench-crl", "--entries", str(entries))

    def collect_logs(self, dest: Path) -> list[Path]:
        """One file per component in `dest`: the runtime's own, then every log of the host side."""
        dest.mkdir(parents=True, exist_ok=True)
        copied = self._component_logs(dest)
        for f in sorted(self.logs.glob("*.log")):
            target = dest / f.name
            target.write_bytes(f.read_bytes())
            copied.append(target)
        return copied
