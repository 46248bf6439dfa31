"""Provider credentials in the supervisor: placeholders for the sandbox, values for the proxy.

:class:`CredentialHook` is a ``RequestHook`` of the HTTP inspector
(``supervisor/proxy/l7``): on every allowed request of an inspected
connection it replaces ``openshell:resolve:env:NAME`` placeholders in header
values and the query string with the real value — only for the hosts the
provider type declares, and only when the client spoke TLS (a secret never
goes upstream in clear text). Any placeholder it cannot substitute is refused
with 403 ``credential_placeholder_denied`` and a reason: never forwarded
verbatim. Values live in this process's memory only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from openshell.providers.placeholders import (
    Credential,
    PlaceholderError,
    PlaceholderResolver,
    contains_placeholder,
)
from openshell.supervisor.proxy.l7.hooks import HookRefused, L7Request, RequestHook

log = logging.getLogger("openshell.supervisor.credentials")


def credentials_from_proto(msg) -> list[Credential]:  # type: ignore[no-untyped-def]
    """Credentials of a ``supervisor_pb2.ProviderEnvironment``."""
    return [Credential(c.env_name, c.value, tuple(c.hosts), c.provider) for c in msg.credentials]


class CredentialHook(RequestHook):
    """Substitutes provider credentials on inspected requests (see the module docstring).

    :param credentials: the sandbox's credentials; swap with :meth:`update`.
    """

    def __init__(self, credentials: Iterable[Credential] = ()) -> None:
        self.resolver = PlaceholderResolver(credentials)

    def update(self, credentials: Iterable[Credential]) -> None:
        """Use ``credentials`` for the next requests (a provider changed)."""
        self.resolver.update(credentials)

    def rewrite(self, request: L7Request) -> None:
        """Replace placeholders in ``request``; raise ``HookRefused`` (403) when one may not be resolved."""
        carried = contains_placeholder(request.target) or any(contains_placeholder(f"{n}: {v}") for n, v in request.headers)
        if not carried:
            return
        try:
            if not request.tls:
                raise PlaceholderError(f"credentials are only sent over TLS; use https://{request.host}")
            request.target = self.resolver.resolve_target(request.host, request.target)
            request.headers = self.resolver.resolve_headers(request.host, request.headers)
        except PlaceholderError as exc:
            log.warning("event=credential_denied sandbox=%s host=%s reason=%s", request.flow.sandbox_id, request.host, exc.reason)
            raise HookRefused(403, "credential_placeholder_denied", exc.reason) from None
        log.info("event=credential_injected sandbox=%s host=%s", request.flow.sandbox_id, request.host)
