"""SPIFFE ID syntax, one case per rule (SPIFFE-ID standard, section 2)."""

from __future__ import annotations

import pytest

from zt.errors import SvidError
from zt.spiffe import parse_spiffe_id, service_of, validate_service_name, workload_id


@pytest.mark.parametrize(
    "text, trust_domain, path",
    [
        ("spiffe://zt.lab/svc/a", "zt.lab", "/svc/a"),
        ("spiffe://zt.lab", "zt.lab", ""),
        ("spiffe://a-b_c.9/x/Y.z-_", "a-b_c.9", "/x/Y.z-_"),
    ],
)
def test_parse_spiffe_id_accepts_valid(text: str, trust_domain: str, path: str) -> None:
    sid = parse_spiffe_id(text)
    assert (sid.trust_domain, sid.path, str(sid)) == (trust_domain, path, text)


@pytest.mark.parametrize(
    "text, rule",
    [
        ("https://zt.lab/svc/a", "scheme"),
        ("SPIFFE://zt.lab/svc/a", "scheme"),
        ("spiffe://", "trust domain"),
        ("spiffe://ZT.lab/svc/a", "trust domain"),
        ("spiffe://zt.lab:8443/svc/a", "port"),
        ("spiffe://user@zt.lab/svc/a", "userinfo"),
        ("spiffe://zt.lab/svc/a?x=1", "query"),
        ("spiffe://zt.lab/svc/a#frag", "fragment"),
        ("spiffe://zt.lab/svc/%41", "percent"),
        ("spiffe://zt.lab/svc//a", "empty segment"),
        ("spiffe://zt.lab/svc/a/", "trailing"),
        ("spiffe://zt.lab/svc/./a", "'.'"),
        ("spiffe://zt.lab/svc/../a", "'.'"),
        ("spiffe://zt.lab/svc/a b", "characters"),
        ("spiffe://zt.lab/" + "a" * 2100, "2048"),
    ],
)
def test_parse_spiffe_id_rejects_with_rule(text: str, rule: str) -> None:
    with pytest.raises(SvidError, match=rule):
        parse_spiffe_id(text)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a b", "x" * 65, "é", "svc%2f"])
def test_service_name_rejects_unsafe_segments(name: str) -> None:
    with pytest.raises(SvidError, match="invalid service name"):
        validate_service_name(name)


def test_workload_id_shape_and_service_of_round_trip() -> None:
    sid = workload_id("zt.lab", "service-a")
    assert str(sid) == "spiffe://zt.lab/svc/service-a"
    assert service_of(sid) == "service-a"
    assert service_of(parse_spiffe_id("spiffe://zt.lab/zt/ra")) is None
