"""Host names: normalisation, IP-literal detection and pattern checks (POLICY.md §2.2).

Shared by validation (policy side), the engine and the proxy (request side), so
both sides agree on what "the same host" means.
"""

from __future__ import annotations

import functools
import ipaddress
import re

# A label of a host pattern: letters, digits, '-', '_' (seen in real service
# names) and '*' for the wildcard forms; anything else cannot be a DNS name.
_LABEL_RE = re.compile(r"^[a-z0-9_*-]{1,63}$")
_PLAIN_LABEL_RE = re.compile(r"^[a-z0-9_-]{1,63}$")

#: kinds of endpoint host, as the engine matches them
HOST_EXACT = "exact"
HOST_WILDCARD = "wildcard"
HOST_ANY = "any"  # empty host: only with allowed_ips


def normalise_host(host: str) -> str:
    """Return ``host`` lower-cased, trailing dot and IPv6 brackets removed.

    ``"API.Example.COM."`` → ``"api.example.com"``; ``"[::1]"`` → ``"::1"``.
    Never raises; validity is checked separately (:func:`request_host_error`).
    """
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h.endswith(".") and not h.endswith(".."):
        h = h[:-1]
    return h


@functools.lru_cache(maxsize=4096)
def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Return the address when ``host`` (normalised) is an IPv4/IPv6 literal, else None.

    Cached (bounded): the proxy asks about the same few hosts and addresses on
    every connection, and ``ipaddress`` parsing costs microseconds each time.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def host_kind(pattern: str) -> str:
    """Classify a validated endpoint host: ``exact``, ``wildcard`` or ``any`` (empty)."""
    if not pattern:
        return HOST_ANY
    return HOST_WILDCARD if "*" in pattern else HOST_EXACT


def pattern_error(pattern: str) -> str | None:
    """Return why a normalised endpoint host pattern is invalid, or None when it is fine.

    Implements the validation half of POLICY.md §2.2: a lone ``*``/``**``, a
    wildcard in the top-level label and ``**`` anywhere but as the whole first
    label are rejected as too broad / malformed.
    """
    if ip_literal(pattern) is not None:
        return None
    if pattern in ("*", "**"):
        return f'host "{pattern}" is too broad: a lone wildcard matches every name; name the domain, e.g. "*.example.com"'
    labels = pattern.split(".")
    if any(not label for label in labels):
        return f'host "{pattern}" has an empty label; accepted: a DNS name such as "api.example.com" or "*.example.com"'
    # "*.com" or "example.*" would match every name under a top-level domain:
    # the wildcard must sit below a named domain (two literal labels at the end).
    if "*" in pattern and (len(labels) < 2 or "*" in labels[-1] or "*" in labels[-2]):
        return (
            f'host "{pattern}" is too broad: a wildcard may not be in the top-level label or the label '
            'directly below it; accepted: wildcards below a named domain, e.g. "*.example.com"'
        )
    for i, label in enumerate(labels):
        if "**" in label and (i != 0 or label != "**"):
            return f'host "{pattern}": "**" is accepted only as the whole first label, e.g. "**.example.com"'
        if not _LABEL_RE.match(label):
            return f'host "{pattern}" has an invalid label "{label}"; accepted: letters, digits, "-", "_" and "*" wildcards (or an IP literal)'
    return None


def request_host_error(host: str) -> str | None:
    """Return why a normalised *requested* host cannot be a destination, or None.

    Wildcards and empty labels never reach the engine: ``**.example.com`` must
    not match ``.example.com``.
    """
    if not host:
        return "empty host"
    if ip_literal(host) is not None:
        return None
    labels = host.split(".")
    for label in labels:
        if not _PLAIN_LABEL_RE.match(label):
            return f'host "{host}" is not a valid DNS name'
    return None
