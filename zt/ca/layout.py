"""Where a CA directory keeps what: one place for every path, so nothing guesses file names.

<dir>/root.pem                           the root CA certificate
<dir>/root.key.enc                       the root key, only with `ztca init --root-key-passphrase-file`:
                                         PKCS#8, encrypted with a passphrase the RA never has
<dir>/root.key                           never written since the root key went offline (see
                                         zt.ca.setup); `--force` still removes an old one
<dir>/intermediate.pem, intermediate.key the only issuer of leaves (key 0600)
<dir>/bundle.pem, bundle.pem.sha256      the trust bundle (roots) and its digest (0444)
<dir>/admin.token                        the RA admin credential (0600; the store keeps its hash)
<dir>/zt.db                              the state store (SQLite)
<dir>/audit.jsonl                        the hash-chained audit log (0600, append-only; zt.auditlog)
<dir>/audit.jsonl.torn                   torn last lines set aside by a repair (evidence, 0600)
<dir>/crl/crl.der, crl/crl.pem           the current CRL, replaced atomically
<dir>/ra/                                the RA's own TLS key and certificate
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

AUDIT_LOG_NAME = "audit.jsonl"


@dataclass(frozen=True)
class CaPaths:
    dir: Path

    @property
    def root_cert(self) -> Path:
        return self.dir / "root.pem"

    @property
    def root_key(self) -> Path:
        return self.dir / "root.key"

    @property
    def root_key_encrypted(self) -> Path:
        return self.dir / "root.key.enc"

    @property
    def intermediate_cert(self) -> Path:
        return self.dir / "intermediate.pem"

    @property
    def intermediate_key(self) -> Path:
        return self.dir / "intermediate.key"

    @property
    def bundle(self) -> Path:
        return self.dir / "bundle.pem"

    @property
    def bundle_sha256(self) -> Path:
        return self.dir / "bundle.pem.sha256"

    @property
    def admin_token(self) -> Path:
        return self.dir / "admin.token"

    @property
    def store(self) -> Path:
        return self.dir / "zt.db"

    @property
    def audit_log(self) -> Path:
        return self.dir / AUDIT_LOG_NAME

    @property
    def crl_dir(self) -> Path:
        return self.dir / "crl"

    @property
    def crl_der(self) -> Path:
        return self.crl_dir / "crl.der"

    @property
    def crl_pem(self) -> Path:
        return self.crl_dir / "crl.pem"

    @property
    def ra_dir(self) -> Path:
        return self.dir / "ra"

    def created_files(self) -> list[Path]:
        """Everything `ztca init` creates (what --force replaces)."""
        return [
            self.root_cert,
            self.root_key,
            self.root_key_encrypted,
            self.intermediate_cert,
            self.intermediate_key,
            self.bundle,
            self.bundle_sha256,
            self.admin_token,
            self.store,
            self.store.with_name(self.store.name + "-wal"),
            self.store.with_name(self.store.name + "-shm"),
        ]

    def exists(self) -> bool:
        return any(
            p.exists()
            for p in (self.root_cert, self.root_key, self.root_key_encrypted, self.intermediate_key, self.store)
        )
