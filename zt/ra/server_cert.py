"""The RA's own TLS certificate, issued by the intermediate at every start.

Clients trust the RA only through the trust bundle, so the RA's certificate comes from the
same CA. It is an SVID (`spiffe://<td>/zt/ra`) that also carries DNS and IP SANs (allowed by
X509-SVID 2) so that ordinary HTTPS clients (curl, httpx) can verify it by host name.
It is recorded in the store like every other certificate the CA signs, under the name
`zt-ra`, which no workload may register (zt.ra.authorize.RESERVED_SERVICE_NAMES).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from zt.fsutil import write_atomic, write_secret
from zt.pki.encoding import key_pem, pem, serial_hex
from zt.pki.keys import generate_key
from zt.ra.authorize import MAX_LEAF_TTL_META, RA_IDENTITY
from zt.ra.csr import spki_sha256
from zt.ra.service import RegistrationAuthority
from zt.ra.store import CertRecord, Store
from zt.spiffe import SpiffeId


@dataclass(frozen=True)
class ServerFiles:
    cert: Path
    key: Path
    serial: str


def _split_names(names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    dns, ips = [], []
    for n in names:
        try:
            ips.append(str(ipaddress.ip_address(n)))
        except ValueError:
            dns.append(n)
    return dns, ips


def issue_server_certificate(ra: RegistrationAuthority, names: tuple[str, ...], ttl: dt.timedelta) -> ServerFiles:
    now = ra.clock.now()
    key = generate_key()
    dns, ips = _split_names(names)
    sid = SpiffeId(ra.authority.trust_domain, "/zt/ra")
    cert = ra.authority.sign_leaf(key.public_key(), sid, ttl, now, ra.crl_url, dns_names=dns, ip_addresses=ips)
    rec = CertRecord(
        serial=serial_hex(cert),
        identity=RA_IDENTITY,
        spiffe_id=str(sid),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        issued_at=now.timestamp(),
        via="server",
        spki_sha256=spki_sha256(cert),
        pem=pem(cert).decode(),
    )
    with ra.store.write() as c:
        Store.add_certificate(c, rec)
        Store.audit(c, now.timestamp(), RA_IDENTITY, "issue", rec.serial, "ok", "RA server certificate")
        # What this RA allows as the longest leaf lifetime (--leaf-ttl), so that `ztca issue`, the
        # admin path beside it, holds to the same maximum.
        Store.set_meta(c, MAX_LEAF_TTL_META, str(ra.leaf_ttl.total_seconds()))
    d = ra.paths.ra_dir
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path, cert_path = d / "server.key", d / "server.pem"
    write_secret(key_path, key_pem(key))
    write_atomic(cert_path, ra.authority.chain_pem(cert))
    return ServerFiles(cert_path, key_path, rec.serial)
