"""Seam for HTTP inspection of ``protocol: rest`` endpoints (POLICY.md §3).

The proxy makes the connection decision, dials the validated address, and then
— when the matched endpoint has ``protocol: rest`` — hands the flow to an
``Inspector`` instead of relaying raw bytes. Plain-HTTP forward requests to a
``rest`` endpoint take the same path (``forward``), so one implementation sees
every request to an inspected endpoint. Without an inspector such flows are
denied (fail closed): relaying them raw would skip the endpoint's L7 rules.

The inspector owns both sockets once called and must close nothing it does not
own: the proxy closes both sockets after the coroutine returns or raises.

The implementation is ``openshell.supervisor.proxy.l7.HttpInspector`` (the
supervisor wires it in); per-request rewriting (credential placeholders) plugs
in there as ``openshell.supervisor.proxy.l7.RequestHook`` objects.
"""

from __future__ import annotations

import abc
import socket
from collections.abc import Callable
from dataclasses import dataclass

from openshell.plugin.kinds import CompiledPolicy, PolicyEngine
from openshell.policy.decision import ConnectInput, Decision
from openshell.supervisor.proxy.http1 import RequestHead
from openshell.supervisor.proxy.log import DecisionLog


@dataclass(frozen=True)
class Flow:
    """An allowed connection handed to the inspector.

    :ivar sandbox_id: the sandbox.
    :ivar connect: the decided connection (host, port, binary, ancestors).
    :ivar decision: the connection decision (``endpoint`` holds the L7 settings,
        ``policy`` the rule key that allowed it).
    :ivar address: the validated upstream address that was dialed.
    :ivar engine: the policy engine, for ``decide_request``.
    :ivar current_policy: returns the policy in force *now*; each request must be
        decided under the version current at that request (POLICY.md §3).
    :ivar log: decision logger (L7 lines add ``method`` and ``path``).
    """

    sandbox_id: str
    connect: ConnectInput
    decision: Decision
    address: str
    engine: PolicyEngine
    current_policy: Callable[[], CompiledPolicy]
    log: DecisionLog


class Inspector(abc.ABC):
    """Evaluates each HTTP request on an inspected connection."""

    @abc.abstractmethod
    async def tunnel(self, flow: Flow, client: socket.socket, upstream: socket.socket, early: bytes) -> None:
        """Serve an allowed ``CONNECT`` to a ``rest`` endpoint.

        Called after ``200 Connection Established`` was sent. The implementation
        terminates the client's TLS (sandbox CA), speaks TLS to ``upstream`` with
        normal verification, and decides every request.

        :param client: non-blocking client socket.
        :param upstream: non-blocking socket connected to ``flow.address``.
        :param early: bytes the client sent after the CONNECT head (start of its
            TLS handshake), to be consumed before reading ``client``.
        """

    @abc.abstractmethod
    async def forward(self, flow: Flow, client: socket.socket, upstream: socket.socket, request: RequestHead, early: bytes) -> None:
        """Serve a plain-HTTP forward request (absolute-form) to a ``rest`` endpoint.

        :param request: the first request's head, target still in absolute form.
        :param early: bytes after that head (start of its body, maybe more requests).
        """
