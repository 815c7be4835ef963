"""Creating a CA directory: root, name-constrained intermediate, trust bundle.

Keys are written 0600 from the moment they exist; the bundle is read-only (0444) and comes
with its SHA-256 (sha256sum format) so agents can pin it.

The root key is used only to sign the intermediate, so it never stays where the RA runs
(`RootKeyCustody`): it is written to a path the operator chose outside the CA directory, or
kept in the CA directory encrypted with a passphrase the RA never has, or not kept at all.
Without it the root still verifies; a new intermediate then means a new root and bundle.
With it, `rotate_intermediate` signs a new intermediate (`ztca rotate-intermediate`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zt.ca.layout import CaPaths
from zt.ca.profiles import ca_extensions, ca_name
from zt.errors import CaError, CaExistsError, ConfigError
from zt.fsutil import READ_ONLY_MODE, SECRET_MODE, write_atomic, write_new, write_secret
from zt.pki.encoding import key_pem, load_certs, load_private_key, pem
from zt.pki.keys import KeyType, PrivateKey, generate_key, signature_hash

ROOT_LIFETIME = dt.timedelta(days=3650)
INTERMEDIATE_LIFETIME = dt.timedelta(days=365)


def _ca_cert(
    subject: x509.Name,
    key: PrivateKey,
    issuer: tuple[x509.Certificate, PrivateKey] | None,
    trust_domain: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    signer = key if issuer is None else issuer[1]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    builder = ca_extensions(
        builder,
        public_key=key.public_key(),
        issuer_public_key=None if issuer is None else issuer[1].public_key(),
        trust_domain=trust_domain,
        path_length=1 if issuer is None else 0,  # the intermediate signs leaves only
        name_constrained=issuer is not None,
    )
    return builder.sign(signer, signature_hash(signer))  # type: ignore[arg-type]


@dataclass(frozen=True)
class RootKeyCustody:
    """Where the root key goes after `ztca init`: `out` (a path outside the CA directory), or
    encrypted with `passphrase` into <dir>/root.key.enc, or (neither) nowhere."""

    out: Path | None = None
    passphrase: bytes | None = None

    def check(self, paths: CaPaths) -> None:
        if self.out is None:
            return
        out = self.out.expanduser().resolve()
        if out.is_relative_to(paths.dir.expanduser().resolve()):
            raise ConfigError(
                f"--root-key-out {self.out} is inside the CA directory {paths.dir}, which the RA "
                "reads; choose a path on offline storage"
            )
        if out.exists():
            raise ConfigError(f"--root-key-out {self.out} exists; refusing to overwrite a key")
        if not out.parent.is_dir():
            raise ConfigError(f"--root-key-out {self.out}: directory {out.parent} does not exist")

    def keep(self, paths: CaPaths, key: PrivateKey) -> None:
        if self.out is not None:
            write_new(self.out, key_pem(key), SECRET_MODE)
        elif self.passphrase is not None:
            data = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(self.passphrase),
            )
            write_new(paths.root_key_encrypted, data, SECRET_MODE)

    def describe(self, paths: CaPaths) -> str:
        if self.out is not None:
            return f"written to {self.out} (0600): move it offline"
        if self.passphrase is not None:
            return f"encrypted in {paths.root_key_encrypted}"
        return "not kept (a new intermediate will need a new root and bundle)"


def load_root_key(path: Path, passphrase: bytes | None) -> PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CaError(f"cannot read the root key {path}: {e.strerror}") from e
    if passphrase is None:
        return load_private_key(data, str(path))
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError) as e:
        raise CaError(f"{path}: cannot decrypt the root key (wrong passphrase?)") from e
    return key  # type: ignore[return-value]


def bundle_digest_line(bundle: bytes) -> bytes:
    return f"{hashlib.sha256(bundle).hexdigest()}  bundle.pem\n".encode()


def create_ca_files(
    paths: CaPaths,
    trust_domain: str,
    now: dt.datetime,
    *,
    force: bool = False,
    key_type: KeyType = KeyType.EC_P256,
    root_lifetime: dt.timedelta = ROOT_LIFETIME,
    intermediate_lifetime: dt.timedelta = INTERMEDIATE_LIFETIME,
    root_key: RootKeyCustody | None = None,
) -> tuple[x509.Certificate, x509.Certificate]:
    """Write root, intermediate and bundle into `paths.dir`; return (root, intermediate).

    The root key leaves memory only as `root_key` says (default: it is not kept)."""
    custody = root_key or RootKeyCustody()
    custody.check(paths)
    if paths.exists():
        if not force:
            raise CaExistsError(
                f"a CA already exists in {paths.dir}; pass --force to replace it (this "
                "invalidates every certificate it issued)"
            )
        for p in paths.created_files():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        for d in (paths.crl_dir, paths.ra_dir):
            shutil.rmtree(d, ignore_errors=True)
    paths.dir.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.dir, 0o700)
    start = now - dt.timedelta(minutes=5)
    root_signing_key = generate_key(key_type)
    root = _ca_cert(ca_name("root", trust_domain), root_signing_key, None, trust_domain, start, now + root_lifetime)
    custody.keep(paths, root_signing_key)
    write_new(paths.root_cert, pem(root))
    int_key = generate_key(key_type)
    write_new(paths.intermediate_key, key_pem(int_key), SECRET_MODE)
    inter_end = min(now + intermediate_lifetime, root.not_valid_after_utc)
    inter = _ca_cert(
        ca_name("intermediate", trust_domain), int_key, (root, root_signing_key), trust_domain, start, inter_end
    )
    write_new(paths.intermediate_cert, pem(inter))
    bundle = pem(root)
    write_new(paths.bundle, bundle, READ_ONLY_MODE)
    write_new(paths.bundle_sha256, bundle_digest_line(bundle), READ_ONLY_MODE)
    return root, inter


def rotate_intermediate(
    paths: CaPaths,
    trust_domain: str,
    root_key: PrivateKey,
    now: dt.datetime,
    *,
    lifetime: dt.timedelta = INTERMEDIATE_LIFETIME,
) -> x509.Certificate:
    """Sign a new intermediate (new key) with the offline root key and replace the current one.

    Leaves issued by the old intermediate keep verifying (their chains carry it, and the root
    is unchanged) until they expire; the RA picks the new one up when restarted.
    """
    root = load_certs(paths.root_cert.read_bytes(), str(paths.root_cert))[0]
    if root_key.public_key() != root.public_key():
        raise CaError(f"the root key given does not belong to {paths.root_cert}")
    key_type = KeyType.EC_P256
    int_key = generate_key(key_type)
    start = now - dt.timedelta(minutes=5)
    inter = _ca_cert(
        ca_name("intermediate", trust_domain),
        int_key,
        (root, root_key),
        trust_domain,
        start,
        min(now + lifetime, root.not_valid_after_utc),
    )
    # Key first, then certificate: a reader that sees the new certificate finds its key too; the
    # RA's Authority.load refuses a mismatched pair rather than sign with it.
    write_secret(paths.intermediate_key, key_pem(int_key))
    write_atomic(paths.intermediate_cert, pem(inter))
    return inter
