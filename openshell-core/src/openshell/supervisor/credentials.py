"""Provider credentials in the supervisor: placeholders for the sandbox, values for the proxy.

:class:`CredentialHook` is a ``RequestHook`` of the HTTP inspector
(``supervisor/proxy/l7``): on every allowed request of an inspected
connection it replaces ``openshell:resolve:env:NAME`` placeholders in header
values and the query string with the real value — only for the hosts the
provider type declares, and only when the client spoke TLS (a secret never
goes upstream in clear text). Any placeholder it cannot substitute is refused
with 403 ``credential_placeholder_denied`` and a reason: never forwarded
verbatim. Values live in this process's memory only.

Every value it puts into a request is registered with ``L7Request.redact``
(together with the Basic token that carries it): the inspector then replaces
the value by its placeholder in every response on that connection, so an
upstream that echoes the request cannot return the secret to the sandbox.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from openshell.providers.placeholders import (
    Credential,
    PlaceholderError,
    PlaceholderResolver,
    contains_placeholder,
    placeholder,
    placeholder_names,
)
from openshell.supervisor.proxy.l7.hooks import HookRefused, L7Request, RequestHook

if TYPE_CHECKING:  # pragma: no cover
    from openshell._proto import supervisor_pb2

log = logging.getLogger("openshell.supervisor.credentials")


def credentials_from_proto(msg: supervisor_pb2.ProviderEnvironment) -> list[Credential]:
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
            old_target, old_headers = request.target, list(request.headers)
            request.target = self.resolver.resolve_target(request.host, request.target)
            request.headers = self.resolver.resolve_headers(request.host, request.headers)
            self._register_echo_forms(request, old_target, old_headers)
        except PlaceholderError as exc:
            log.warning("event=credential_denied sandbox=%s host=%s reason=%s", request.flow.sandbox_id, request.host, exc.reason)
            raise HookRefused(403, "credential_placeholder_denied", exc.reason) from None
        log.info("event=credential_injected sandbox=%s host=%s", request.flow.sandbox_id, request.host)

    def _register_echo_forms(self, request: L7Request, old_target: str, old_headers: list[tuple[str, str]]) -> None:
        """Tell the inspector which values went into ``request`` (and what the sandbox calls them)."""
        names = placeholder_names(old_target)
        for (name, old), (_, new) in zip(old_headers, request.headers, strict=True):
            if old == new:
                continue
            names |= placeholder_names(old)
            scheme, _, token = old.partition(" ")
            if name.lower() in ("authorization", "proxy-authorization") and scheme.lower() == "basic":
                # The secret travels inside base64(user:password): the whole new token is secret too.
                request.redact(new.partition(" ")[2].strip(), token.strip())
                try:
                    names |= placeholder_names(base64.b64decode(token.strip(), validate=True).decode("utf-8"))
                except (binascii.Error, ValueError, UnicodeDecodeError):
                    pass
        for env_name in names:
            request.redact(self.resolver.value(env_name, request.host), placeholder(env_name))
