"""Helpers that build certificates breaking one SVID rule at a time (test vectors)."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY = ec.generate_private_key(ec.SECP256R1())


def build(
    *,
    uris: list[str] | None = None,
    ca: bool = False,
    ku: dict[str, bool] | None = None,
    ku_critical: bool = True,
    eku: list[x509.ObjectIdentifier] | None = None,
    with_ku: bool = True,
    empty_subject: bool = False,
    san_critical: bool = False,
    with_bc: bool = True,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([]) if empty_subject else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")]))
        .public_key(KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(hours=1))
    )
    if with_bc:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if with_ku:
        flags = {
            "digital_signature": not ca,
            "content_commitment": False,
            "key_encipherment": False,
            "data_encipherment": False,
            "key_agreement": False,
            "key_cert_sign": ca,
            "crl_sign": ca,
            "encipher_only": False,
            "decipher_only": False,
        }
        flags.update(ku or {})
        b = b.add_extension(x509.KeyUsage(**flags), critical=ku_critical)
    if eku is None and not ca:
        eku = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if uris is not None:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), critical=san_critical
        )
    return b.sign(KEY, hashes.SHA256())
