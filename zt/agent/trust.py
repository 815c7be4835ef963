"""What the agent trusts: exactly the pinned trust bundle, for the RA's TLS and for what it writes.

The bundle file (checked against `--bundle-sha256` when given) is the agent's one root of
trust. Two things follow from it, and both are here:

- `tls_context`: the context towards the RA trusts the bundle's roots and nothing else. It is
  built from `ssl.SSLContext(PROTOCOL_TLS_CLIENT)`, which loads no default paths, so neither
  the system store nor certifi nor `SSL_CERT_FILE` / `SSL_CERT_DIR` can add a CA (the bug this
  replaces: `create_default_context()` loaded ~145 system CAs next to our one root, so any
  publicly trusted server on the RA's address received the bootstrap token).
- `verify_svid`: an RA's answer is only material to write once its chain verifies against the
  pinned roots, the leaf follows the X509-SVID rules, is for the key we generated and names the
  SPIFFE ID we asked for.

Why path validation is done by OpenSSL in a loopback handshake and not with
`cryptography.x509.verification`: our intermediate carries a critical URI name constraint
(X509-SVID 4.2 allows it; `ztca init` sets `permitted URI:<trust domain>`), and cryptography's
verifier rejects every URI name constraint ("unsupported name constraint", measured with
cryptography 50.0.2), so it cannot verify any chain we issue. OpenSSL, which the C++ service
and curl use, implements RFC 5280 4.2.1.10 for URIs. Doing the check as an in-memory mTLS
handshake in which both sides present the new chain and trust only the pinned roots checks
exactly what the services will check: the chain, validity, basic constraints and path length,
name constraints, the serverAuth purpose (client side) and the clientAuth purpose (server side),
and that the private key matches the certificate.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zt.errors import ConfigError, SvidError
from zt.pki.encoding import key_pem, pem
from zt.pki.keys import PrivateKey
from zt.svid import check_ca, check_leaf, uri_sans

HANDSHAKE_ROUNDS = 8  # TLS 1.3 mTLS needs 3 flights; a bounded loop never spins forever


@dataclass(frozen=True)
class PinnedBundle:
    """The trust bundle as the operator gave it: the file's bytes and the root certificates."""

    pem: bytes
    roots: tuple[x509.Certificate, ...]
    sha256: str


def parse_bundle(data: bytes, what: str) -> PinnedBundle:
    try:
        roots = tuple(x509.load_pem_x509_certificates(data))
    except ValueError as e:
        raise ConfigError(f"trust bundle {what} holds no readable certificate: {e}") from e
    return PinnedBundle(data, roots, hashlib.sha256(data).hexdigest())


def read_pinned_bundle(path: Path, sha256: str | None) -> PinnedBundle:
    """Read the bundle and, when a pin is given, refuse it unless its SHA-256 matches."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read trust bundle {path}: {e}") from e
    if sha256:
        want = sha256.strip().split()[0].lower() if sha256.strip() else ""
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise ConfigError(f"trust bundle {path} has SHA-256 {got}, pinned {want}: refusing to trust it")
    return parse_bundle(data, str(path))


def roots_pem(roots: Sequence[x509.Certificate]) -> str:
    return b"".join(pem(c) for c in roots).decode()


def tls_context(roots: Sequence[x509.Certificate]) -> ssl.SSLContext:
    """A client context that trusts exactly `roots`: no system store, no environment."""
    if not roots:
        raise ConfigError("the trust bundle holds no certificate")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname=True, CERT_REQUIRED, no CA loaded
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=roots_pem(roots))
    return ctx


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, as `openssl x509 -fingerprint -sha256` shows it."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def same_certificates(a: Sequence[x509.Certificate], b: Sequence[x509.Certificate]) -> bool:
    return sorted(fingerprint(c) for c in a) == sorted(fingerprint(c) for c in b)


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """A path OpenSSL can open that holds `data`; on Linux an anonymous memfd, so the private
    key never touches a disk; elsewhere a 0600 file in a 0700 temporary directory."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("zt-agent-verify", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="zt-agent-verify-") as d:  # pragma: no cover - non-Linux
        p = Path(d) / "material.pem"
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield str(p)


def _handshake(
    client: ssl.SSLObject,
    server: ssl.SSLObject,
    c_in: ssl.MemoryBIO,
    c_out: ssl.MemoryBIO,
    s_in: ssl.MemoryBIO,
    s_out: ssl.MemoryBIO,
) -> None:
    done = {"client": False, "server": False}
    for _ in range(HANDSHAKE_ROUNDS):
        for name, side in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise SvidError("the loopback handshake did not complete")


def verify_chain_with_openssl(
    key: PrivateKey, chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]
) -> None:
    """Path validation (X509-SVID 5.1, RFC 5280 6) of `chain` against `roots` only, by OpenSSL.

    Both ends of an in-memory mTLS handshake present `key` + `chain` and trust only `roots`;
    raises SvidError with OpenSSL's verify message when either side refuses.
    """
    material = key_pem(key) + b"".join(pem(c) for c in chain)
    cadata = roots_pem(roots)
    with _memory_file(material) as path:
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        for ctx in (sctx, cctx):
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=cadata)
            try:
                ctx.load_cert_chain(path)
            except ssl.SSLError as e:
                raise SvidError(f"the certificate does not belong to our key: {e.reason or e}") from e
        cctx.check_hostname = False  # an SVID names a SPIFFE ID, not a host; checked by the caller
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = cctx.wrap_bio(c_in, c_out, server_side=False)
    server = sctx.wrap_bio(s_in, s_out, server_side=True)
    try:
        _handshake(client, server, c_in, c_out, s_in, s_out)
    except ssl.SSLCertVerificationError as e:
        raise SvidError(
            f"the chain does not verify against the pinned trust bundle: {e.verify_message} "
            f"(OpenSSL verify code {e.verify_code})"
        ) from e
    except ssl.SSLError as e:
        raise SvidError(f"the chain does not verify against the pinned trust bundle: {e.reason or e}") from e


def verify_svid(
    key: PrivateKey, chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], spiffe_id: str
) -> None:
    """Raise SvidError unless `chain` is a usable X509-SVID for `spiffe_id` and `key` under `roots`."""
    if not roots:
        raise SvidError("no trusted roots to verify against")
    if not chain:
        raise SvidError("no certificate in the chain")
    leaf = chain[0]
    if leaf.public_key() != key.public_key():
        raise SvidError("the certificate is for another key than the one we generated")
    uris = uri_sans(leaf)
    if uris != [spiffe_id]:
        raise SvidError(f"the certificate names {uris}, we asked for {spiffe_id}")
    findings = [str(f) for f in check_leaf(leaf)]
    for ca in chain[1:]:
        findings += [f"intermediate: {f}" for f in check_ca(ca)]
    if findings:
        raise SvidError("; ".join(findings))
    verify_chain_with_openssl(key, chain, roots)
