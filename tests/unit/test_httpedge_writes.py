"""zt.httpedge's pieces that need no server: the config's fixed choices and how an answer's
writes reach the connection (the e2e tests in tests/e2e/test_http_edges.py run them for real)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from zt.httpedge import EdgeConfig, EdgeLimits, HeadWithBody


class RecordingTransport:
    """Stands in for the connection's transport: keeps what is written and whether it closed."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def joined(transport: RecordingTransport) -> HeadWithBody:
    return HeadWithBody(cast(asyncio.Transport, transport))


def test_the_head_goes_out_with_the_body_in_one_write() -> None:
    t = RecordingTransport()
    w = joined(t)
    w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert t.writes == []
    w.write(b"{}")
    assert t.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    w.write(b"more")  # anything after the head passes straight through
    assert t.writes[-1] == b"more"


def test_a_100_continue_goes_out_at_once_and_the_head_after_it_is_joined() -> None:
    t = RecordingTransport()
    w = joined(t)
    w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert t.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    w.write(b"HTTP/1.1 413 Payload Too Large\r\n\r\n")
    w.write(b"x")
    assert t.writes[1] == b"HTTP/1.1 413 Payload Too Large\r\n\r\nx"


def test_close_sends_a_held_head_first() -> None:
    t = RecordingTransport()
    w = joined(t)
    w.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    w.close()
    assert t.writes == [b"HTTP/1.1 500 Internal Server Error\r\n\r\n"] and t.closed


def test_everything_else_is_the_transport_itself() -> None:
    t = RecordingTransport()
    assert joined(t).get_extra_info("peername") == ("127.0.0.1", 1)


def test_proxy_headers_are_off_whatever_the_caller_asks() -> None:
    """The client is the TCP peer: X-Forwarded-For from a local process must not rename it."""
    assert EdgeConfig("zt.ra.asgi:app_from_env", EdgeLimits()).proxy_headers is False
    assert EdgeConfig("zt.ra.asgi:app_from_env", EdgeLimits(), proxy_headers=True).proxy_headers is False
