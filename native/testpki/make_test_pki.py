#!/usr/bin/env python3
"""Test vectors for the native services: a small PKI with good and deliberately bad identities.

Why a separate generator from zt's CA: the native test suites need material our CA refuses
to produce (expired leaves, two URI SANs, a foreign CA, stale CRLs, a 100k-entry CRL), and
they need it before and independently of the Python core. It depends only on `cryptography`.

Layout written under OUT (see docs/contracts.md, section 2, for the cert-dir layout):

    ca/        root.pem root.key intermediate.pem intermediate.key bundle.pem
    foreign/   root.pem intermediate.pem bundle.pem   (another trust domain's CA)
    ids/NAME/  one cert dir per identity (current -> gen-..., key.pem, chain.pem, ...)
    crl/       crl.pem (revokes ids/revoked), crl-empty.pem, crl-stale.pem (past nextUpdate),
               crl-foreign.pem (signed by the foreign CA), crl-large.pem (100k entries +
               ids/revoked; only with --large-crl)
    serials.json  {identity name: lowercase hex serial}

Identities (trust domain zt.lab unless said):
    service-a, service-b, client     good leaves, spiffe://zt.lab/svc/<name>
    revoked                          good leaf, listed in crl/crl.pem
    expired                          notAfter one hour in the past
    not-yet-valid                    notBefore one hour in the future
    foreign                          spiffe://other.lab/svc/foreign from the foreign CA
    two-uris                         two URI SANs
    not-spiffe                       URI SAN https://zt.lab/svc/not-spiffe
    no-uri                           DNS SAN only
    wrong-key                        cert.pem/chain.pem do not match key.pem (no keystore.p12)
    empty-subject                    empty Subject, SAN not critical   (breaks L-4 of
    ku-not-critical                  key usage not critical            (L-7   docs/svid-rules.md;
    ku-key-agreement                 keyAgreement, no digitalSignature (L-8   each a valid SPIFFE
    eku-client-only                  EKU clientAuth only               (L-11  ID under our CA)

Subcommands:
    make_test_pki.py all OUT [--large-crl]
    make_test_pki.py rotate OUT NAME [--lifetime SECONDS]
        issue a fresh leaf for ids/NAME (same SPIFFE ID, new key) and swap it in as a new
        generation; prints the new serial.
    make_test_pki.py crl OUT FILE [--revoke NAME ...] [--stale]
        write a CRL signed by the intermediate revoking the named identities.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "zt.lab"
FOREIGN_DOMAIN = "other.lab"
KEEP_GENERATIONS = 3
LINKED_FILES = (
    "key.pem",
    "cert.pem",
    "chain.pem",
    "bundle.pem",
    "keystore.p12",
    "truststore.p12",
    "keystore.pass",
    "svid.json",
)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def make_ca(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    trust_domain: str,
) -> x509.Certificate:
    """Root (issuer None) or name-constrained intermediate with pathLen 0."""
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zt test"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )
    issuer_name = subject if issuer is None else issuer[0].subject
    signer = key if issuer is None else issuer[1]
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - dt.timedelta(minutes=5))
        .not_valid_after(now() + dt.timedelta(days=3650 if issuer is None else 365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]), critical=False
        )
    )
    if issuer is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False
        ).add_extension(
            x509.NameConstraints(
                permitted_subtrees=[x509.UniformResourceIdentifier(trust_domain)], excluded_subtrees=None
            ),
            critical=True,
        )
    return b.sign(signer, hashes.SHA256())


def make_leaf(
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    key: ec.EllipticCurvePrivateKey,
    sans: list[x509.GeneralName],
    not_before: dt.datetime,
    not_after: dt.datetime,
    *,
    breaks: str = "",
) -> x509.Certificate:
    """A conforming leaf SVID, or with `breaks` one that breaks exactly that X509-SVID rule
    (docs/svid-rules.md): "L-4" empty Subject with a non-critical SAN, "L-7" key usage not
    critical, "L-8" keyAgreement instead of digitalSignature, "L-11" EKU clientAuth only."""
    subject = [] if breaks == "L-4" else [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zt test")]
    sign_or_agree = breaks != "L-8"
    eku = (
        [ExtendedKeyUsageOID.CLIENT_AUTH]
        if breaks == "L-11"
        else [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=sign_or_agree,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=not sign_or_agree,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=breaks != "L-7",
        )
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(issuer[1], hashes.SHA256())
    )


def write_generation(
    cert_dir: Path,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    intermediate: x509.Certificate,
    bundle: list[x509.Certificate],
    spiffe_id: str,
) -> str:
    """Write one generation and swap `current` to it (the writer's contract, section 2)."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    serial = format(cert.serial_number, "x")
    gen = f"gen-{stamp}-{serial[:8]}"
    gdir = cert_dir / gen
    gdir.mkdir()
    password = secrets.token_urlsafe(18)
    enc = serialization.BestAvailableEncryption(password.encode())
    write(gdir / "key.pem", pem_key(key), 0o600)
    write(gdir / "cert.pem", pem_cert(cert))
    write(gdir / "chain.pem", pem_cert(cert) + pem_cert(intermediate))
    write(gdir / "bundle.pem", b"".join(pem_cert(c) for c in bundle))
    write(gdir / "keystore.pass", password.encode(), 0o600)
    if key.public_key() == cert.public_key():  # PKCS#12 cannot hold a mismatched pair (wrong-key)
        write(
            gdir / "keystore.p12",
            pkcs12.serialize_key_and_certificates(b"identity", key, cert, [intermediate], enc),
            0o600,
        )
    write(
        gdir / "truststore.p12",
        pkcs12.serialize_java_truststore(
            [pkcs12.PKCS12Certificate(c, f"root-{i}".encode()) for i, c in enumerate(bundle)], enc
        ),
    )
    meta = {
        "spiffe_id": spiffe_id,
        "serial": serial,
        "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "generation": gen,
    }
    write(gdir / "svid.json", json.dumps(meta, indent=2).encode() + b"\n")
    tmp = cert_dir / ".current.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(gen, tmp)
    os.replace(tmp, cert_dir / "current")
    for name in LINKED_FILES:
        link = cert_dir / name
        if not link.is_symlink():
            os.symlink(f"current/{name}", link)
    gens = sorted(p for p in cert_dir.iterdir() if p.is_dir() and p.name.startswith("gen-") and not p.is_symlink())
    for old in gens[:-KEEP_GENERATIONS]:
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    return serial


def load_pair(d: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((d / f"{name}.pem").read_bytes())
    key = serialization.load_pem_private_key((d / f"{name}.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def make_crl(
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    serials: list[int],
    stale: bool = False,
    number: int = 1,
) -> bytes:
    this_update = now() - (dt.timedelta(hours=2) if stale else dt.timedelta(minutes=1))
    next_update = now() - dt.timedelta(hours=1) if stale else now() + dt.timedelta(days=1)
    revoked_at = now() - dt.timedelta(minutes=1)
    revoked = [x509.RevokedCertificateBuilder().serial_number(s).revocation_date(revoked_at).build() for s in serials]
    number_ext = x509.CRLNumber(number)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key())
    # Every entry handed to the constructor at once: add_revoked_certificate copies the builder's
    # list on each call, which made the 100k-entry CRL (--large-crl) quadratic: about 25 s of CPU
    # instead of under 2, in every test that asks for it (issue 17).
    b = x509.CertificateRevocationListBuilder(
        issuer_name=issuer[0].subject,
        last_update=this_update,
        next_update=next_update,
        extensions=[
            x509.Extension(number_ext.oid, False, number_ext),
            x509.Extension(aki.oid, False, aki),
        ],
        revoked_certificates=revoked,
    )
    return b.sign(issuer[1], hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def cmd_all(out: Path, large_crl: bool) -> int:
    out.mkdir(parents=True, exist_ok=True)
    root_key, int_key = new_key(), new_key()
    root = make_ca("zt test root", root_key, None, TRUST_DOMAIN)
    inter = make_ca("zt test intermediate", int_key, (root, root_key), TRUST_DOMAIN)
    ca = out / "ca"
    write(ca / "root.pem", pem_cert(root))
    write(ca / "root.key", pem_key(root_key), 0o600)
    write(ca / "intermediate.pem", pem_cert(inter))
    write(ca / "intermediate.key", pem_key(int_key), 0o600)
    write(ca / "bundle.pem", pem_cert(root))

    f_root_key, f_int_key = new_key(), new_key()
    f_root = make_ca("foreign root", f_root_key, None, FOREIGN_DOMAIN)
    f_inter = make_ca("foreign intermediate", f_int_key, (f_root, f_root_key), FOREIGN_DOMAIN)
    write(out / "foreign" / "root.pem", pem_cert(f_root))
    write(out / "foreign" / "intermediate.pem", pem_cert(f_inter))
    write(out / "foreign" / "bundle.pem", pem_cert(f_root))

    ours = (inter, int_key)
    t = now()
    ok = (t - dt.timedelta(minutes=5), t + dt.timedelta(days=1))
    uri = x509.UniformResourceIdentifier

    def spiffe(name: str, td: str = TRUST_DOMAIN) -> str:
        return f"spiffe://{td}/svc/{name}"

    specs: dict[
        str,
        tuple[
            tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
            list[x509.GeneralName],
            tuple[dt.datetime, dt.datetime],
            str,
        ],
    ] = {
        "service-a": (ours, [uri(spiffe("service-a"))], ok, spiffe("service-a")),
        "service-b": (ours, [uri(spiffe("service-b"))], ok, spiffe("service-b")),
        "client": (ours, [uri(spiffe("client"))], ok, spiffe("client")),
        "revoked": (ours, [uri(spiffe("revoked"))], ok, spiffe("revoked")),
        "expired": (
            ours,
            [uri(spiffe("expired"))],
            (t - dt.timedelta(hours=2), t - dt.timedelta(hours=1)),
            spiffe("expired"),
        ),
        "not-yet-valid": (
            ours,
            [uri(spiffe("not-yet-valid"))],
            (t + dt.timedelta(hours=1), t + dt.timedelta(hours=2)),
            spiffe("not-yet-valid"),
        ),
        "foreign": (
            (f_inter, f_int_key),
            [uri(spiffe("foreign", FOREIGN_DOMAIN))],
            ok,
            spiffe("foreign", FOREIGN_DOMAIN),
        ),
        "two-uris": (ours, [uri(spiffe("two-uris")), uri(spiffe("other"))], ok, spiffe("two-uris")),
        "not-spiffe": (ours, [uri("https://zt.lab/svc/not-spiffe")], ok, "https://zt.lab/svc/not-spiffe"),
        "no-uri": (ours, [x509.DNSName("no-uri.zt.lab")], ok, ""),
        "wrong-key": (ours, [uri(spiffe("wrong-key"))], ok, spiffe("wrong-key")),
    }
    # Leaves that chain to our root and carry a valid SPIFFE ID but break one leaf rule each.
    broken = {
        "empty-subject": "L-4",
        "ku-not-critical": "L-7",
        "ku-key-agreement": "L-8",
        "eku-client-only": "L-11",
    }
    for name in broken:
        specs[name] = (ours, [uri(spiffe(name))], ok, spiffe(name))
    serials: dict[str, str] = {}
    raw_serials: dict[str, int] = {}
    for name, (issuer, sans, (nb, na), sid) in specs.items():
        key = new_key()
        cert = make_leaf(issuer, key, sans, nb, na, breaks=broken.get(name, ""))
        bundle = [f_root] if issuer[0] is f_inter else [root]
        chain_ca = issuer[0]
        if name == "wrong-key":
            key = new_key()  # the certificate was made for another key
        serials[name] = write_generation(out / "ids" / name, key, cert, chain_ca, bundle, sid)
        raw_serials[name] = cert.serial_number

    crl = out / "crl"
    write(crl / "crl.pem", make_crl(ours, [raw_serials["revoked"]], number=2))
    write(crl / "crl-empty.pem", make_crl(ours, [], number=1))
    write(crl / "crl-stale.pem", make_crl(ours, [raw_serials["revoked"]], stale=True, number=1))
    write(crl / "crl-foreign.pem", make_crl((f_inter, f_int_key), [raw_serials["revoked"]], number=1))
    if large_crl:
        many = [x509.random_serial_number() for _ in range(100_000)] + [raw_serials["revoked"]]
        write(crl / "crl-large.pem", make_crl(ours, many, number=3))
    write(out / "serials.json", json.dumps(serials, indent=2).encode() + b"\n")
    print(json.dumps(serials))
    return 0


def cmd_rotate(out: Path, name: str, lifetime: int) -> int:
    inter, int_key = load_pair(out / "ca", "intermediate")
    root = x509.load_pem_x509_certificate((out / "ca" / "root.pem").read_bytes())
    cert_dir = out / "ids" / name
    meta = json.loads((cert_dir / "current" / "svid.json").read_text())
    key = new_key()
    t = now()
    cert = make_leaf(
        (inter, int_key),
        key,
        [x509.UniformResourceIdentifier(meta["spiffe_id"])],
        t - dt.timedelta(seconds=30),
        t + dt.timedelta(seconds=lifetime),
    )
    serial = write_generation(cert_dir, key, cert, inter, [root], meta["spiffe_id"])
    print(serial)
    return 0


def cmd_crl(out: Path, dest: Path, revoke: list[str], stale: bool) -> int:
    inter, int_key = load_pair(out / "ca", "intermediate")
    serials = []
    for name in revoke:
        cert = x509.load_pem_x509_certificate((out / "ids" / name / "current" / "cert.pem").read_bytes())
        serials.append(cert.serial_number)
    tmp = dest.with_name(dest.name + ".tmp")
    write(tmp, make_crl((inter, int_key), serials, stale=stale, number=int(dt.datetime.now().timestamp())))
    os.replace(tmp, dest)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("all")
    a.add_argument("out", type=Path)
    a.add_argument("--large-crl", action="store_true")
    r = sub.add_parser("rotate")
    r.add_argument("out", type=Path)
    r.add_argument("name")
    r.add_argument("--lifetime", type=int, default=86400)
    c = sub.add_parser("crl")
    c.add_argument("out", type=Path)
    c.add_argument("file", type=Path)
    c.add_argument("--revoke", nargs="*", default=[])
    c.add_argument("--stale", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "all":
        return cmd_all(args.out, args.large_crl)
    if args.cmd == "rotate":
        return cmd_rotate(args.out, args.name, args.lifetime)
    return cmd_crl(args.out, args.file, args.revoke, args.stale)


if __name__ == "__main__":
    sys.exit(main())
