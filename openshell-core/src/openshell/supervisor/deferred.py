"""The proxy's HTTP inspector and ``inference.local`` router, built on first use.

Their modules (HTTP/1.1 framing, TLS termination, the router, secret scrubbing:
~25 ms of imports in a container) are needed only when the sandbox reaches an
inspected endpoint or ``inference.local``, which many sandboxes never do; a
supervisor's start imports neither. What must fail closed at start still does:
an unreadable ``$OPENSHELL_EXTRA_CA`` stops it here.

The first use pays the import (tens of ms) once; it runs in the event loop's
thread, like the work it defers.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

from openshell.extra_ca import check_extra_ca

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from openshell.supervisor.proxy.http1 import RequestHead
    from openshell.supervisor.proxy.inspect import Flow

log = logging.getLogger("openshell.supervisor.inference")


class DeferredInspector:
    """An ``Inspector`` (``tunnel``/``forward``) that builds ``HttpInspector(ca, extra_ca, hooks)`` on first use.

    :param ca: the sandbox CA (``SandboxCA``).
    :param extra_ca: PEM file of extra upstream trust roots, or None.
    :param hooks: request hooks (credential substitution).
    :raises openshell.extra_ca.ExtraCAError: ``extra_ca`` cannot be read or holds no
        certificate (fail closed, at start; the message names the variable and file).
    """

    def __init__(self, ca: Any, *, extra_ca: Optional[str] = None, hooks: Sequence[Any] = ()) -> None:
        if extra_ca:
            check_extra_ca(extra_ca)
        self._args = (ca, extra_ca, list(hooks))
        self._inspector: Any = None

    def _get(self) -> Any:
        if self._inspector is None:
            from openshell.supervisor.proxy.l7 import HttpInspector

            ca, extra_ca, hooks = self._args
            self._inspector = HttpInspector(ca, extra_ca=extra_ca, hooks=hooks)
        return self._inspector

    async def tunnel(self, flow: Flow, client: socket.socket, upstream: socket.socket, early: bytes) -> None:
        await self._get().tunnel(flow, client, upstream, early)

    async def forward(self, flow: Flow, client: socket.socket, upstream: socket.socket, request: RequestHead, early: bytes) -> None:
        await self._get().forward(flow, client, upstream, request, early)


class DeferredRouter:
    """The ``inference.local`` router (``InferenceRouter``), built on first request.

    Until then :meth:`set_bundle` only keeps the newest route bundle, which the
    router starts with.

    :param sandbox_id: the sandbox's id (logs).
    :param ca: the sandbox CA (the router's TLS leaf).
    """

    def __init__(self, sandbox_id: str, ca: Any) -> None:
        self.sandbox_id = sandbox_id
        self.ca = ca
        self.bundle: Any = None
        self._router: Any = None

    def set_bundle(self, bundle: Any) -> None:
        """Route new requests with ``bundle`` (``RouteBundle``)."""
        self.bundle = bundle
        if self._router is not None:
            self._router.set_bundle(bundle)
            return
        log.info(
            "event=inference_route sandbox=%s backend=%s model=%s revision=%d", self.sandbox_id, bundle.backend or "-", bundle.model or "-", bundle.revision
        )

    def _get(self) -> Any:
        if self._router is None:
            from openshell.supervisor.inference import InferenceRouter

            self._router = InferenceRouter(self.sandbox_id, self.ca, self.bundle)
        return self._router

    async def serve_tls(self, sock: socket.socket, early: bytes = b"") -> None:
        await self._get().serve_tls(sock, early)

    async def serve_plain(self, sock: socket.socket, initial: bytes) -> None:
        await self._get().serve_plain(sock, initial)

    async def close(self) -> None:
        """Close the router if it was ever built."""
        if self._router is not None:
            await self._router.close()


__all__ = ["DeferredInspector", "DeferredRouter"]
