"""Rewriting a forward-proxy request for its upstream (RFC 9110 §7.6.1, RFC 9112 §3.2.2).

A client talking to a proxy sends ``GET http://host:port/path HTTP/1.1``; the
origin server expects ``GET /path HTTP/1.1`` with ``Host: host:port``. Hop-by-hop
fields (those meant for the proxy, and any the client lists in ``Connection``)
are removed, and the upstream is told ``Connection: close``: the proxy decides
per connection, so it never reuses an upstream connection for a second request.
"""

from __future__ import annotations

from openshell.supervisor.proxy.http1 import Authority, RequestHead

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer", "upgrade"})
# Never dropped even when listed in Connection: they frame the body or name the
# target, and removing them would desynchronise the stream we relay unchanged.
_KEEP = frozenset({"host", "content-length", "transfer-encoding"})


def origin_request(req: RequestHead, auth: Authority, origin: str) -> bytes:
    """The request head to send upstream, ending with the blank line.

    :param req: the client's parsed head (absolute-form target).
    :param auth: the target authority (its ``Host`` value replaces the client's).
    :param origin: origin-form target (``/path?query``).
    :returns: bytes ``METHOD origin VERSION CRLF fields CRLF CRLF``.
    """
    listed: set[str] = set()
    for name, value in req.headers:
        if name.lower() in ("connection", "proxy-connection"):
            listed.update(tok.strip().lower() for tok in value.split(","))
    drop = (HOP_BY_HOP | listed) - _KEEP
    host = auth.host if ":" not in auth.host else f"[{auth.host}]"
    if auth.port != 80:
        host = f"{host}:{auth.port}"
    lines = [f"{req.method} {origin} {req.version}", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in req.headers if name.lower() not in drop and name.lower() != "host"]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
