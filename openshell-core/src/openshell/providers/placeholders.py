"""Credential placeholders and their substitution by the proxy.

Inside a sandbox a provider credential variable holds
``openshell:resolve:env:NAME``, never the value. On a connection the proxy
inspects (TLS terminated with the sandbox CA, or plain HTTP to a ``rest``
endpoint) it replaces placeholders in request **headers and the query string**
with the real value — but only when the request goes to one of the hosts the
provider type declares. Anything else that carries a placeholder is denied with
a reason (a placeholder is never forwarded verbatim: a server would see our
secret-naming scheme and the request would fail confusingly anyway).

Forms recognised: the literal placeholder; inside a query value also its
percent-encoded form (``openshell%3Aresolve%3Aenv%3ANAME``); and inside
``Authorization: Basic base64(user:password)`` (what git sends).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

PLACEHOLDER_PREFIX = "openshell:resolve:env:"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_LITERAL = re.compile(re.escape(PLACEHOLDER_PREFIX) + f"({_NAME})")
_ENCODED = re.compile(r"openshell(?:%3[Aa]|:)resolve(?:%3[Aa]|:)env(?:%3[Aa]|:)" + f"({_NAME})")
_MARKER = re.compile(rb"openshell(?:%3[Aa]|:)resolve(?:%3[Aa]|:)env(?:%3[Aa]|:)")


def placeholder(env_name: str) -> str:
    """Return the placeholder the sandbox sees for credential variable ``env_name``."""
    return PLACEHOLDER_PREFIX + env_name


def contains_placeholder(data: bytes | str) -> bool:
    """True when ``data`` holds a placeholder in any recognised form (also base64 in Basic auth).

    Used on traffic the proxy does not substitute in, to deny instead of forwarding.
    """
    raw = data.encode("latin-1", "replace") if isinstance(data, str) else data
    if _MARKER.search(raw):
        return True
    for match in re.finditer(rb"(?i)authorization:\s*basic\s+([A-Za-z0-9+/=]+)", raw):
        try:
            if _MARKER.search(base64.b64decode(match.group(1), validate=True)):
                return True
        except (binascii.Error, ValueError):
            continue
    return False


def placeholder_names(text: str) -> set[str]:
    """Names of the placeholders in ``text`` (literal or percent-encoded form), e.g. ``{"GITHUB_TOKEN"}``."""
    return set(_ENCODED.findall(text))


def host_matches(pattern: str, host: str) -> bool:
    """Match ``host`` against a POLICY.md §2.2 host pattern (case-insensitive).

    ``*`` matches within one label, ``**.`` as the first label matches one or more labels.
    """
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if "*" not in pattern:
        return pattern == host
    if pattern.startswith("**."):
        suffix = pattern[3:]
        n = suffix.count(".") + 1
        labels = host.split(".")
        return len(labels) > n and host_matches(suffix, ".".join(labels[-n:]))
    labels_p, labels_h = pattern.split("."), host.split(".")
    if len(labels_p) != len(labels_h):
        return False
    for lp, lh in zip(labels_p, labels_h, strict=True):
        rx = "^" + ".*".join(re.escape(part) for part in lp.split("*")) + "$"
        if not re.match(rx, lh):
            return False
    return True


class PlaceholderError(Exception):
    """A request carries a placeholder the proxy must not (or cannot) resolve.

    :ivar reason: one line for the 403 body and the log (never a secret value).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Credential:
    """One substitutable credential (supervisor memory only).

    :ivar env_name: the variable name; its placeholder is ``placeholder(env_name)``.
    :ivar value: the real value (not in repr).
    :ivar hosts: host patterns the value may be sent to.
    :ivar provider: the provider's name (for messages).
    """

    env_name: str
    value: str = field(repr=False)
    hosts: tuple[str, ...] = ()
    provider: str = ""


class PlaceholderResolver:
    """Replace placeholders in one request's headers and query for a given host.

    :param credentials: the sandbox's credentials (from the gateway's provider environment).
    """

    def __init__(self, credentials: Iterable[Credential] = ()) -> None:
        self._by_name = {c.env_name: c for c in credentials}

    def __bool__(self) -> bool:
        return bool(self._by_name)

    def update(self, credentials: Iterable[Credential]) -> None:
        """Replace the known credentials (a provider was updated)."""
        self._by_name = {c.env_name: c for c in credentials}

    def _value(self, name: str, host: str) -> str:
        cred = self._by_name.get(name)
        if cred is None:
            raise PlaceholderError(
                f"placeholder for {name} has no provider attached to this sandbox; attach one with 'openshell sandbox create --provider NAME'"
            )
        if not any(host_matches(p, host) for p in cred.hosts):
            allowed = ", ".join(cred.hosts) or "no hosts"
            raise PlaceholderError(f"credential {name} of provider '{cred.provider}' may only be sent to {allowed}, not {host}")
        if any(ch in cred.value for ch in "\r\n\0"):
            raise PlaceholderError(f"credential {name} of provider '{cred.provider}' contains control characters")
        return cred.value

    def value(self, name: str, host: str) -> str:
        """The value of credential ``name`` for a request to ``host``.

        :raises PlaceholderError: unknown name, or ``host`` not among the credential's hosts.
        """
        return self._value(name, host)

    def resolve_header(self, host: str, name: str, value: str) -> str:
        """Return ``value`` with placeholders replaced.

        :raises PlaceholderError: a placeholder that cannot go to ``host``.
        """
        if name.lower() in ("authorization", "proxy-authorization"):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "basic" and token.strip():
                try:
                    decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
                except (binascii.Error, ValueError, UnicodeDecodeError):
                    decoded = ""
                if _ENCODED.search(decoded):
                    replaced = _LITERAL.sub(lambda m: self._value(m.group(1), host), decoded)
                    if _ENCODED.search(replaced):
                        raise PlaceholderError("a percent-encoded placeholder in Basic credentials is not substituted")
                    return f"{scheme} " + base64.b64encode(replaced.encode()).decode()
        if not _ENCODED.search(value):
            return value
        out = _LITERAL.sub(lambda m: self._value(m.group(1), host), value)
        if _ENCODED.search(out):
            raise PlaceholderError(f"header {name} carries a percent-encoded placeholder; headers take the literal form")
        return out

    def resolve_headers(self, host: str, headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Return ``headers`` with every placeholder replaced (see :meth:`resolve_header`)."""
        return [(n, self.resolve_header(host, n, v)) for n, v in headers]

    def resolve_target(self, host: str, target: str) -> str:
        """Return the origin-form ``target`` with placeholders in its query replaced
        (percent-encoded); a placeholder in the path is denied.

        :raises PlaceholderError: see :meth:`resolve_header`.
        """
        path, sep, query = target.partition("?")
        if _ENCODED.search(path):
            raise PlaceholderError("placeholders are substituted in headers and the query string, not in the path")
        if not sep or not _ENCODED.search(query):
            return target
        return path + "?" + _ENCODED.sub(lambda m: quote(self._value(m.group(1), host), safe=""), query)
