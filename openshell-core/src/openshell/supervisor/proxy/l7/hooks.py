"""Per-request hooks on inspected connections (the seam for credential injection).

A ``RequestHook`` sees every request that the policy **allowed** (or audited) on
an inspected connection, after the decision and its log line and before the
request goes upstream. It may rewrite header values and the query string — for
example, the providers feature replaces ``openshell:resolve:env:NAME``
placeholders with real credentials for the hosts a provider declares, so the
secret never exists inside the sandbox.

Rules the inspector enforces on a hook's result (fail closed):

- the canonical path must stay the same (the decision was made on it); only the
  query may change — a hook that changes the path gets the request refused;
- header names must be tokens and values free of CR, LF and NUL;
- ``HookRefused`` answers the client with the given status and closes;
- any other exception answers 502 ``hook_failed`` and closes.

A hook that puts a secret into a request registers it with
:meth:`L7Request.redact`: from then on every response on that connection is
scrubbed of the value (``scrub``), so an upstream echoing the request cannot
hand the secret to the sandbox.

Hooks run on the proxy's event loop: keep them fast and non-blocking. Never log
header values or the query: they may now hold secrets.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from openshell.supervisor.proxy.inspect import Flow


@dataclass
class L7Request:
    """One request on its way upstream (mutable: hooks edit it in place).

    :ivar method: as sent by the client (e.g. ``GET``).
    :ivar target: origin-form target as sent (``/path?query``); hooks may change
        the query part only.
    :ivar version: ``HTTP/1.1`` or ``HTTP/1.0``.
    :ivar headers: ``[(name, value), ...]`` in order; hooks may edit, add, remove.
    :ivar host: the connection's target host (lower case), e.g. ``api.github.com``.
    :ivar port: the connection's target port.
    :ivar tls: True when the client spoke TLS (the upstream does too).
    :ivar flow: the connection (binary, ancestors, matched policy key, ...).
    :ivar policy: the rule key that allowed this request.
    """

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    host: str
    port: int
    tls: bool
    flow: Flow
    policy: str | None = None
    notes: dict = field(default_factory=dict)  # free space for hooks; never logged
    redactions: dict[str, str] = field(default_factory=dict, repr=False)  # secret -> what the sandbox sees

    def redact(self, secret: str, replacement: str) -> None:
        """Have responses on this connection show ``replacement`` wherever ``secret``
        comes back (also percent-encoded or JSON-escaped; see ``scrub.secret_forms``).

        :param secret: a value this hook put into the request (a credential).
        :param replacement: what the sandbox knows it by (its placeholder).
        """
        if secret:
            self.redactions[secret] = replacement

    def header(self, name: str) -> str | None:
        """First value of ``name`` (case-insensitive), or None."""
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), None)

    def set_header(self, name: str, value: str) -> None:
        """Replace every ``name`` field by one with ``value`` (appended when absent)."""
        low = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != low]
        self.headers.append((name, value))


class HookRefused(Exception):
    """Raised by a hook to refuse a request.

    :param status: HTTP status for the client (400, 403, 502...).
    :param error: the JSON body's ``error`` code (e.g. ``credential_unavailable``).
    :param detail: one human line (must not contain secrets).
    """

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


class RequestHook(abc.ABC):
    """Rewrites allowed requests on inspected connections; see the module docstring."""

    @abc.abstractmethod
    def rewrite(self, request: L7Request) -> None:
        """Edit ``request`` in place (headers, query). Raise ``HookRefused`` to refuse it."""
