"""Request-head parsing and forward rewriting (pure functions, no sockets)."""

from __future__ import annotations

import pytest
from openshell.supervisor.proxy.forward import origin_request
from openshell.supervisor.proxy.http1 import (
    Authority,
    HeadError,
    parse_authority,
    parse_head,
    split_absolute,
)


def test_parse_head_keeps_header_order_and_strips_values():
    req = parse_head(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nX-A:  1 \r\nx-a: 2")
    assert (req.method, req.target, req.version) == ("GET", "http://a.test/", "HTTP/1.1")
    assert req.headers == (("Host", "a.test"), ("X-A", "1"), ("x-a", "2"))
    assert req.header("X-a") == "1"


@pytest.mark.parametrize(
    "head",
    [b"GET / HTTP/1.1\nHost: a", b"GET / HTTP/1.1\r\nHost : a", b"GET / HTTP/1.1\r\nX: a\x00b", b"G\xc3T / HTTP/1.1"],
)
def test_parse_head_rejects_malformed(head):
    with pytest.raises(HeadError) as err:
        parse_head(head)
    assert err.value.status == 400


@pytest.mark.parametrize(
    "text,expected",
    [
        ("API.Example.COM.:443", Authority("api.example.com", 443)),
        ("[2001:DB8::1]:8443", Authority("2001:db8::1", 8443)),
        ("10.199.0.2:80", Authority("10.199.0.2", 80)),
    ],
)
def test_parse_authority_normalises(text, expected):
    assert parse_authority(text) == expected


def test_ipv6_authority_prints_bracketed():
    assert str(Authority("::1", 80)) == "[::1]:80"


def test_split_absolute_defaults_port_and_path_and_drops_fragment():
    assert split_absolute("http://a.test") == ("http", Authority("a.test", 80), "/")
    assert split_absolute("http://a.test:81/x?y=1#frag") == ("http", Authority("a.test", 81), "/x?y=1")
    assert split_absolute("http://a.test?q") == ("http", Authority("a.test", 80), "/?q")
    assert split_absolute("HTTPS://a.test/")[0] == "https"
    with pytest.raises(HeadError):
        split_absolute("/origin-form")


def test_origin_request_drops_hop_by_hop_and_connection_listed_fields():
    req = parse_head(
        b"POST http://a.test:8080/p?q HTTP/1.1\r\nHost: wrong\r\nProxy-Connection: keep-alive\r\n"
        b"Connection: X-Secret, Content-Length\r\nX-Secret: s\r\nContent-Length: 3\r\nKeep-Alive: 5\r\nAccept: */*"
    )
    out = origin_request(req, Authority("a.test", 8080), "/p?q").decode()
    assert out == ("POST /p?q HTTP/1.1\r\nHost: a.test:8080\r\nContent-Length: 3\r\nAccept: */*\r\nConnection: close\r\n\r\n")
