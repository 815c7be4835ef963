"""Creating a CA directory: root, name-constrained intermediate, trust bundle.

Keys are written 0600 from the moment they exist; the bundle is read-only (0444) and comes
with its SHA-256 (sha256sum format) so agents can pin it. The root key is used only here:
everything afterwards is signed by the intermediate.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil

from cryptography import x509

from zt.ca.layout import CaPaths
from zt.ca.profiles import ca_extensions, ca_name
from zt.errors import CaExistsError
from zt.fsutil import READ_ONLY_MODE, SECRET_MODE, write_new
from zt.pki.encoding import key_pem, pem
from zt.pki.keys import KeyType, PrivateKey, generate_key, signature_hash

ROOT_LIFETIME = dt.timedelta(days=3650)
INTERMEDIATE_LIFETIME = dt.timedelta(days=365)


def _ca_cert(
    subject: x509.Name, key: PrivateKey, issuer: tuple[x509.Certificate, PrivateKey] | None,
    trust_domain: str, not_before: dt.datetime, not_after: dt.datetime,
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
        builder, public_key=key.public_key(),
        issuer_public_key=None if issuer is None else issuer[1].public_key(),
        trust_domain=trust_domain,
        path_length=1 if issuer is None else 0,  # the intermediate signs leaves only
        name_constrained=issuer is not None,
    )
    return builder.sign(signer, signature_hash(signer))  # type: ignore[arg-type]


def bundle_digest_line(bundle: bytes) -> bytes:
    return f"{hashlib.sha256(bundle).hexdigest()}  bundle.pem\n".encode()


def create_ca_files(
    paths: CaPaths, trust_domain: str, now: dt.datetime, *, force: bool = False,
    key_type: KeyType = KeyType.EC_P256,
    root_lifetime: dt.timedelta = ROOT_LIFETIME, intermediate_lifetime: dt.timedelta = INTERMEDIATE_LIFETIME,
) -> tuple[x509.Certificate, x509.Certificate]:
    """Write root, intermediate and bundle into `paths.dir`; return (root, intermediate)."""
    if paths.exists():
        if not force:
            raise CaExistsError(f"a CA already exists in {paths.dir}; pass --force to replace it (this "
                                "invalidates every certificate it issued)")
        for p in paths.created_files():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        for d in (paths.crl_dir, paths.ra_dir):
            shutil.rmtree(d, ignore_errors=True)
    paths.dir.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.dir, 0o700)
    start = now - dt.timedelta(minutes=5)
    root_key = generate_key(key_type)
    write_new(paths.root_key, key_pem(root_key), SECRET_MODE)
    root = _ca_cert(ca_name("root", trust_domain), root_key, None, trust_domain, start, now + root_lifetime)
    write_new(paths.root_cert, pem(root))
    int_key = generate_key(key_type)
    write_new(paths.intermediate_key, key_pem(int_key), SECRET_MODE)
    inter_end = min(now + intermediate_lifetime, root.not_valid_after_utc)
    inter = _ca_cert(ca_name("intermediate", trust_domain), int_key, (root, root_key), trust_domain, start,
                     inter_end)
    write_new(paths.intermediate_cert, pem(inter))
    bundle = pem(root)
    write_new(paths.bundle, bundle, READ_ONLY_MODE)
    write_new(paths.bundle_sha256, bundle_digest_line(bundle), READ_ONLY_MODE)
    return root, inter
