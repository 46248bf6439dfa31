"""The bytes the proxy answers with (POLICY.md §2.6).

Every non-200 answer closes the connection (``Connection: close``) and carries a
JSON body, so agents and humans see why. Denials use exactly the shape of §2.6:
``{"error": "policy_denied"|"ssrf_denied", "detail": ..., "reason": ...}``.
"""

from __future__ import annotations

import json

CONNECTION_ESTABLISHED = b"HTTP/1.1 200 Connection Established\r\n\r\n"

_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def json_response(status: int, body: dict, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete ``HTTP/1.1`` response with a JSON body and ``Connection: close``.

    :param status: one of the statuses in ``_REASONS``.
    :param body: JSON-serialisable object; serialised compactly (no spaces).
    :param headers: extra ``(name, value)`` header pairs.
    """
    data = json.dumps(body, separators=(",", ":")).encode()
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def denied(error: str, detail: str, reason: str) -> bytes:
    """403 for a policy or destination-safety denial (POLICY.md §2.6).

    :param error: ``policy_denied`` or ``ssrf_denied``.
    :param detail: ``"CONNECT host:port not permitted by policy"`` or
        ``"GET host:port/path not permitted by policy"`` (see ``detail_for``).
    :param reason: the decision's reason sentence.
    """
    return json_response(403, {"error": error, "detail": detail, "reason": reason})


def detail_for(method: str, authority: str, path: str | None = None) -> str:
    """The §2.6 ``detail`` text: ``CONNECT host:port`` or ``METHOD host:port/path``."""
    target = authority if path is None else f"{authority}{path}"
    return f"{method} {target} not permitted by policy"


def error(status: int, code: str, detail: str) -> bytes:
    """Non-policy failure (400 malformed, 431 too large, 502 dial failed, ...).

    Body: ``{"error": code, "detail": detail}``.
    """
    return json_response(status, {"error": code, "detail": detail})
