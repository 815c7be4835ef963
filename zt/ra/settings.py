"""The RA's settings: one immutable value, passed from the command line to every worker.

Worker processes are started by uvicorn and import the app by name, so the parent hands
them the resolved settings as JSON in one environment variable (ZT_RA_SETTINGS_JSON).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

from zt.httpedge import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS, EdgeLimits
from zt.ra.limits import Limits

ENV_SETTINGS = "ZT_RA_SETTINGS_JSON"
# The longest leaf lifetime an RA may be configured for, and so the upper bound of
# `ttl_seconds` in the API schema. X509-SVIDs are short-lived; a year is already generous.
MAX_LEAF_TTL = dt.timedelta(days=366)


@dataclass(frozen=True)
class RaSettings:
    ca_dir: Path
    store: str | None = None  # --store: None for the CA directory's SQLite file (zt.ra.store_open)
    host: str = "127.0.0.1"
    port: int = 8443
    workers: int = 1
    leaf_ttl: dt.timedelta = dt.timedelta(hours=1)
    crl_url: str | None = None
    crl_check_interval: float = 10.0
    server_names: tuple[str, ...] = ("127.0.0.1",)
    server_cert_ttl: dt.timedelta = dt.timedelta(days=7)
    max_body: int = 64 * 1024
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    durable: bool = True
    log_level: str = "info"
    audit_stdout: bool = False  # also write each audit log line to stdout (--audit-stdout)
    limits: Limits = dataclasses.field(default_factory=Limits)
    # The Unix socket of the host's recorder process (zt.ra.commit_server), set by zt-ra for
    # its workers; None: each process records its own issuances (zt.ra.group_commit).
    recorder_socket: str | None = None

    @property
    def edge_limits(self) -> EdgeLimits:
        return EdgeLimits(header_timeout=self.header_timeout, max_connections=self.max_connections)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["ca_dir"] = str(self.ca_dir)
        d["leaf_ttl"] = self.leaf_ttl.total_seconds()
        d["server_cert_ttl"] = self.server_cert_ttl.total_seconds()
        d["server_names"] = list(self.server_names)
        d["limits"] = self.limits.to_dict()
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> RaSettings:
        d = json.loads(text)
        d["ca_dir"] = Path(d["ca_dir"])
        d["leaf_ttl"] = dt.timedelta(seconds=d["leaf_ttl"])
        d["server_cert_ttl"] = dt.timedelta(seconds=d["server_cert_ttl"])
        d["server_names"] = tuple(d["server_names"])
        d["limits"] = Limits.from_dict(d["limits"])
        return cls(**d)

    @classmethod
    def from_env(cls) -> RaSettings:
        return cls.from_json(os.environ[ENV_SETTINGS])
