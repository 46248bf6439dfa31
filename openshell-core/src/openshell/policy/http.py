"""Request-target canonicalisation for HTTP inspection (POLICY.md §3).

Rules match the *canonical* path, so two spellings of one resource
(``/a/./b``, ``/a//b``, ``/%61/b``) cannot be used to slip past a rule. The proxy
calls :func:`split_target` on each request line and forwards the original
target unchanged; the engine canonicalises again (idempotent) as a guard.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT_RE = re.compile(r"%([0-9A-Fa-f]{2})")
# Characters allowed raw in a path (RFC 3986 pchar plus "/"), besides "%"-escapes.
_PATH_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%")


class PathError(ValueError):
    """A request target that must be refused with ``400 Bad Request``; ``str()`` says why."""


def _decode_unreserved(path: str) -> str:
    def repl(m: re.Match[str]) -> str:
        byte = int(m.group(1), 16)
        if byte < 0x20 or byte == 0x7F:
            raise PathError("percent-encoded control byte in path")
        if byte == 0x2F:
            raise PathError("encoded '/' (%2F) in path")
        ch = chr(byte)
        return ch if ch in _UNRESERVED else "%" + m.group(1).upper()

    return _PCT_RE.sub(repl, path)


def canonical_path(path: str) -> str:
    """Return the canonical form of an origin-form path (no query).

    Steps: reject control bytes, fragments, raw non-ASCII and malformed or
    ``%2F`` escapes; decode percent-escapes of unreserved characters (others are
    kept, upper-cased); strip ``;params`` from each segment; collapse ``//``;
    resolve ``.`` and ``..``. A trailing ``/`` is kept.

    :raises PathError: when the path must be refused (``..`` above the root,
        encoded slash, control byte, fragment, not starting with ``/``).
    """
    if not path.startswith("/"):
        raise PathError("path must start with '/'")
    if "#" in path:
        raise PathError("fragment in request target")
    for ch in path:
        if ch not in _PATH_CHARS:
            if ord(ch) < 0x20 or ord(ch) == 0x7F:
                raise PathError("control byte in path")
            raise PathError(f"character {ch!r} must be percent-encoded in a path")
    if re.search(r"%(?![0-9A-Fa-f]{2})", path):
        raise PathError("malformed percent-escape in path")
    decoded = _decode_unreserved(path)
    out: list[str] = []
    segments = decoded.split("/")[1:]
    for i, seg in enumerate(segments):
        seg = seg.split(";", 1)[0]
        last = i == len(segments) - 1
        if seg == "..":
            if not out:
                raise PathError("'..' above the root")
            out.pop()
            if last:
                out.append("")
        elif seg == ".":
            if last:
                out.append("")
        elif seg == "":
            if last:
                out.append("")  # keep the trailing slash; inner empties collapse
        else:
            out.append(seg)
    # A popped trailing "" followed by more segments cannot occur: "" is only appended last.
    return "/" + "/".join(out)


def split_target(target: str) -> tuple[str, str]:
    """Split an origin-form request target into ``(canonical_path, raw_query)``.

    :param target: e.g. ``/repos/a/../b?per_page=10``.
    :returns: ``("/repos/b", "per_page=10")``; the raw query is what the proxy
        forwards and what :func:`parse_query` reads.
    :raises PathError: as :func:`canonical_path`, and for a fragment.
    """
    if "#" in target:
        raise PathError("fragment in request target")
    path, _, query = target.partition("?")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in query):
        raise PathError("control byte in query")
    return canonical_path(path), query


def parse_query(query: str) -> tuple[tuple[str, str], ...]:
    """Parse a raw query string into ``(key, value)`` pairs, in order (a multimap).

    ``tag=v-1&tag=v-2&flag`` → ``(("tag", "v-1"), ("tag", "v-2"), ("flag", ""))``.
    Keys and values are percent-decoded (``+`` is a space, as servers read it);
    empty pieces are skipped. Never raises.
    """
    out: list[tuple[str, str]] = []
    for piece in query.split("&"):
        if not piece:
            continue
        key, _, value = piece.partition("=")
        out.append((unquote_plus(key, errors="replace"), unquote_plus(value, errors="replace")))
    return tuple(out)
