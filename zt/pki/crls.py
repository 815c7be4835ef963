"""Reading a CRL's fields that relying parties act on (RFC 5280 section 5.2.3).

The CA writes CRLs (zt.ca.crl); the publisher and the agent only read them, and must agree on
what the CRL number is: it orders CRLs, so a lower number is a rollback.
"""

from __future__ import annotations

from cryptography import x509


def crl_number(crl: x509.CertificateRevocationList) -> int:
    ext = crl.extensions.get_extension_for_class(x509.CRLNumber)
    return ext.value.crl_number
