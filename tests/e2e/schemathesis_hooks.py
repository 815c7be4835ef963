"""schemathesis hooks for the RA: what a JSON Schema cannot say, made real.

A CSR's signature, key and SPIFFE ID, and a renewal proof's signature, are beyond any schema,
so generated ones are refused (400) as they should be. For the stateful phase to reach the
success paths, these hooks stand in for a real agent where the links lead: an issuance with a
token that an earlier `register` answered gets a real CSR for that service's SPIFFE ID, and a
renewal of a certificate that an earlier issuance answered gets a real proof signed with that
certificate's key. Everything else stays as schemathesis generated it.

Loaded by schemathesis through SCHEMATHESIS_HOOKS (tests/e2e/test_ra_schemathesis.py); the admin
credential comes from ZT_ST_ADMIN_TOKEN and is put on register and revoke only.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import schemathesis
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zt.agent.material import build_csr, csr_pem
from zt.clock import utcnow
from zt.pki.keys import PrivateKey, generate_key
from zt.pki.renewal_proof import make_renewal_proof

_lock = threading.Lock()
_services_by_token: dict[str, str] = {}  # token -> spiffe_id, from register answers
_keys_by_spki: dict[bytes, PrivateKey] = {}  # public key DER -> the key our CSR was made with
_ADMIN = os.environ.get("ZT_ST_ADMIN_TOKEN", "")
_TRUST_DOMAIN = os.environ.get("ZT_ST_TRUST_DOMAIN", "zt.lab")


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _header(case: Any, name: str) -> str | None:
    for k, v in (case.headers or {}).items():
        if k.lower() == name:
            return str(v)
    return None


def _negative(case: Any) -> bool:
    """A case generated to break the schema stays as generated: it must be refused."""
    meta = case.meta
    return meta is not None and meta.generation.mode.is_negative


@schemathesis.hook
def map_case(ctx: Any, case: Any) -> Any:
    if case.operation.path in ("/v1/register", "/v1/revoke") and _ADMIN:
        case.headers = {**(case.headers or {}), "authorization": f"Bearer {_ADMIN}"}
    return case


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    """Just before sending, when the stateful phase has put a link's values in."""
    if _negative(case):
        return
    path = case.operation.path
    body = case.body if isinstance(case.body, dict) else None
    if path == "/v1/issue" and body is not None and "csr" in body:
        auth = _header(case, "authorization") or ""
        with _lock:
            spiffe_id = _services_by_token.get(auth.removeprefix("Bearer ").strip())
        if spiffe_id is not None:
            key = generate_key()
            body["csr"] = csr_pem(build_csr(key, spiffe_id))
            with _lock:
                _keys_by_spki[_spki_of_key(key)] = key
    if path == "/v1/renew" and body is not None and isinstance(body.get("proof"), str):
        try:
            chain = x509.load_pem_x509_certificates(body["proof"].encode())
        except ValueError:
            return
        with _lock:
            current_key = _keys_by_spki.get(_spki(chain[0]))
        if current_key is not None:
            sid = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            spiffe_id = sid.get_values_for_type(x509.UniformResourceIdentifier)[0]
            new_key = generate_key()
            csr = build_csr(new_key, spiffe_id)
            body["csr"] = csr_pem(csr)
            csr_der = csr.public_bytes(serialization.Encoding.DER)
            body["proof"] = make_renewal_proof(current_key, chain, spiffe_id, csr_der, utcnow())
            with _lock:
                _keys_by_spki[_spki_of_key(new_key)] = new_key


def _spki_of_key(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@schemathesis.hook
def after_call(ctx: Any, case: Any, response: Any) -> None:
    if case.operation.path == "/v1/register" and response.status_code == 201:
        doc = response.json()
        with _lock:
            _services_by_token[doc["token"]] = doc["spiffe_id"]
