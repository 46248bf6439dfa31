"""HTTP inspection inside TLS for ``protocol: rest`` endpoints (POLICY.md §3).

Public API::

    HttpInspector(ca, *, upstream_ctx=None, extra_ca=None, hooks=())  # an ``Inspector``
    RequestHook, L7Request, HookRefused     # per-request rewrite seam (credentials)
    upstream_context(extra_ca) -> ssl.SSLContext
    accept_client(ca, sock, early, host) -> Transport   # TLS-or-plain termination
    serve_local(ca, sock, early, host, handler)          # answer requests in the supervisor (inference.local)
    LocalRequest, LocalResponse, BodyTooLarge

Modules, one job each: ``transport`` (plain/TLS byte transports over a
non-blocking socket), ``message`` (strict HTTP/1.1 framing, smuggling
defences), ``hooks`` (the rewrite seam), ``upgrade`` (WebSocket relay), ``local`` (serving a name from the supervisor
itself with the same front door), ``scrub`` (substituted secrets out of responses), ``inspector`` (per-request decisions,
keep-alive, 403 bodies, WebSocket relay).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openshell._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - imported on first use (__getattr__)
    from openshell.supervisor.proxy.l7.hooks import HookRefused, L7Request, RequestHook
    from openshell.supervisor.proxy.l7.inspector import HttpInspector, accept_client
    from openshell.supervisor.proxy.l7.local import BodyTooLarge, LocalRequest, LocalResponse, serve_local
    from openshell.supervisor.proxy.l7.transport import TransportError, upstream_context

# name -> module, imported on first use: the supervisor's credential hook needs
# ``hooks`` at start, the rest only once a sandbox reaches an inspected endpoint
# or inference.local (openshell.supervisor.deferred).
_HOME = {
    "HookRefused": "hooks",
    "L7Request": "hooks",
    "RequestHook": "hooks",
    "HttpInspector": "inspector",
    "accept_client": "inspector",
    "BodyTooLarge": "local",
    "LocalRequest": "local",
    "LocalResponse": "local",
    "serve_local": "local",
    "TransportError": "transport",
    "upstream_context": "transport",
}


__getattr__ = lazy_exports("openshell.supervisor.proxy.l7", _HOME, globals())


__all__ = [
    "BodyTooLarge",
    "HookRefused",
    "HttpInspector",
    "L7Request",
    "LocalRequest",
    "LocalResponse",
    "RequestHook",
    "TransportError",
    "accept_client",
    "serve_local",
    "upstream_context",
]
