"""Public-key pins in curl's format (sha256//base64 of the SubjectPublicKeyInfo digest).

Our SVIDs carry only a URI SAN, and curl insists on matching a DNS name or IP against the
server certificate, so `curl --cacert` cannot accept them. `-k --pinnedpubkey` makes curl
accept exactly the server key we expect instead (curl still enforces the pin), while the
server still verifies curl's client certificate in full: the part the lab is about.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization


def curl_pin(cert_pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
