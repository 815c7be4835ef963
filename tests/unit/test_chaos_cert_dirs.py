"""Plan 2's check of an agent's certificate directory, on directories made here: a whole one
passes, a torn one (key of one renewal, certificate of another; files missing) is named."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from zt.agent.writer import CURRENT, CertDirWriter
from zt.lab.chaos_history import GENERATION_FILES, cert_dir_problems


def _cert(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = dt.datetime.now(dt.UTC)
    b = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    b = b.serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(hours=1))
    return b.sign(key, hashes.SHA256())


def _generation(out: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Path:
    g = out / name
    g.mkdir(parents=True)
    for f in GENERATION_FILES:
        (g / f).write_bytes(b"x")
    (g / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (g / "chain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (g / "svid.json").write_text(json.dumps({"serial": format(cert.serial_number, "x")}))
    return g


def test_chaos_cert_dir_whole_passes_and_torn_generations_are_named(tmp_path: Path) -> None:
    a, b = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    _generation(tmp_path, "gen-1", a, _cert(a))
    os.symlink("gen-1", tmp_path / "current")
    assert cert_dir_problems(tmp_path) == []

    _generation(tmp_path, "gen-2", b, _cert(a))  # the key of one renewal, the certificate of another
    (_generation(tmp_path, "gen-3", b, _cert(b)) / "keystore.p12").unlink()  # half written
    problems = cert_dir_problems(tmp_path)
    assert problems == ["gen-2: key.pem does not match the certificate", "gen-3: missing keystore.p12"]

    (tmp_path / "current").unlink()
    os.symlink("gen-9", tmp_path / "current")
    assert "current does not resolve to a generation" in cert_dir_problems(tmp_path)


def test_writer_sweeps_a_generation_a_kill_cut_short_and_keeps_the_rest(tmp_path: Path) -> None:
    """An agent killed mid-write leaves a gen-* without svid.json; the next start removes it,
    and never the current generation or a whole one."""
    for name in ("gen-1", "gen-2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "svid.json").write_text("{}")
    (tmp_path / CURRENT).symlink_to("gen-2")
    (tmp_path / "gen-3").mkdir()
    (tmp_path / "gen-3" / "key.pem").write_text("half")
    assert CertDirWriter(tmp_path).swept == ["gen-3"]
    assert sorted(p.name for p in tmp_path.glob("gen-*")) == ["gen-1", "gen-2"]
    assert CertDirWriter(tmp_path / "absent").swept == []
