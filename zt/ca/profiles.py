"""Certificate profiles: the extensions each role gets, with the rule each comes from.

Roles: the root CA, the intermediate CA (the only issuer of leaves), the workload SVID, and
the RA's own TLS server certificate (an SVID that also carries DNS/IP SANs, which X509-SVID 2
allows, so ordinary HTTPS clients can verify it by host name).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from zt.spiffe import SpiffeId


def ca_name(label: str, trust_domain: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zt"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"zt {label} CA {trust_domain}"),
        ]
    )


def leaf_name(label: str) -> x509.Name:
    # A non-empty subject, so the SAN need not be critical (X509-SVID 3.1, RFC 5280 4.1.2.6).
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zt"),
            x509.NameAttribute(NameOID.COMMON_NAME, label[:64]),
        ]
    )


def _key_usage(*, sign_certs: bool) -> x509.KeyUsage:
    # X509-SVID 4.3: KU present and critical; CAs keyCertSign (+cRLSign), leaves digitalSignature only.
    return x509.KeyUsage(
        digital_signature=not sign_certs,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign_certs,
        crl_sign=sign_certs,
        encipher_only=False,
        decipher_only=False,
    )


def ca_extensions(
    builder: x509.CertificateBuilder,
    *,
    public_key: CertificateIssuerPublicKeyTypes,
    issuer_public_key: CertificateIssuerPublicKeyTypes | None,
    trust_domain: str,
    path_length: int,
    name_constrained: bool,
) -> x509.CertificateBuilder:
    b = (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(sign_certs=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        # X509-SVID 3.2: a signing certificate's SPIFFE ID, if any, is the bare trust domain.
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]), critical=False
        )
    )
    if issuer_public_key is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False)
    if name_constrained:
        # RFC 5280 4.2.1.10: for URIs the constraint applies to the host part, i.e. the SPIFFE
        # trust domain; the intermediate can then never sign for another trust domain.
        b = b.add_extension(
            x509.NameConstraints(
                permitted_subtrees=[x509.UniformResourceIdentifier(trust_domain)], excluded_subtrees=None
            ),
            critical=True,
        )
    return b


def leaf_extensions(
    builder: x509.CertificateBuilder,
    *,
    public_key: CertificateIssuerPublicKeyTypes,
    issuer_public_key: CertificateIssuerPublicKeyTypes,
    spiffe_id: SpiffeId,
    crl_url: str | None,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    authority_key_id: x509.AuthorityKeyIdentifier | None = None,
) -> x509.CertificateBuilder:
    """The X509-SVID leaf profile. `authority_key_id` is the issuer's, if the caller keeps it
    (zt.ca.authority computes it once: hashing the issuer key per leaf cost a few percent)."""
    aki = authority_key_id or x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key)
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(str(spiffe_id))]
    sans += [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    b = (
        builder.add_extension(_LEAF_BASIC_CONSTRAINTS, critical=True)  # X509-SVID 4.1
        .add_extension(_LEAF_KEY_USAGE, critical=True)  # X509-SVID 4.3
        .add_extension(_LEAF_EXTENDED_KEY_USAGE, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
    )
    if crl_url:
        b = b.add_extension(_crl_distribution_points(crl_url), critical=False)
    return b


# The leaf's extensions that are the same for every leaf, made once (immutable values).
_LEAF_BASIC_CONSTRAINTS = x509.BasicConstraints(ca=False, path_length=None)
_LEAF_KEY_USAGE = _key_usage(sign_certs=False)
# X509-SVID 4.4: both, so one SVID serves as TLS client and server.
_LEAF_EXTENDED_KEY_USAGE = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])


@functools.lru_cache(maxsize=8)
def _crl_distribution_points(crl_url: str) -> x509.CRLDistributionPoints:
    """The CRL's address as a leaf carries it: one URL per authority, so made once per URL."""
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(crl_url)], relative_name=None, reasons=None, crl_issuer=None
            )
        ]
    )
