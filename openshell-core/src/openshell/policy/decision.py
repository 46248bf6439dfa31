"""Inputs and outputs of policy decisions, shared by engines, the proxy and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from openshell.policy.model import Endpoint


@dataclass(frozen=True)
class ConnectInput:
    """One connection to decide (POLICY.md §2.1).

    :ivar host: requested host, lower-cased, trailing dot and IPv6 brackets removed.
    :ivar port: 1–65535.
    :ivar binary: canonical executable path of the connecting process.
    :ivar ancestors: executable paths of its ancestors, nearest first.
    """

    host: str
    port: int
    binary: str
    ancestors: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequestInput:
    """One HTTP request on an inspected connection (POLICY.md §3).

    :ivar connect: the connection it travels on.
    :ivar policy_key: the rule key that allowed the connection.
    :ivar method: upper-case method.
    :ivar path: canonical path (already normalised, see ``openshell.policy.http``).
    :ivar query: parsed query as ``(key, value)`` pairs in order.
    """

    connect: ConnectInput
    policy_key: str
    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    #: the endpoint the connection was allowed by (``Decision.endpoint``); engines
    #: look it up from ``policy_key`` and the connect target when None
    endpoint: Optional[Endpoint] = None


@dataclass(frozen=True)
class Decision:
    """A policy decision.

    :ivar action: ``allow``, ``deny`` or ``audit`` (forwarded but logged).
    :ivar reason: one human sentence; for denials it says what to change.
    :ivar policy: the matched rule key, or None.
    :ivar error: the 403 body's ``error`` (``policy_denied`` / ``ssrf_denied``) for denials.
    :ivar engine: who decided: the engine's name (``opa``) or ``ssrf``.
    :ivar endpoint: the matched endpoint (its L7 settings), when allowed.
    :ivar rule: for L7 denials, ``"METHOD PATH"`` of the request.
    """

    action: str
    reason: str = ""
    policy: Optional[str] = None
    error: Optional[str] = None
    engine: str = ""
    endpoint: Optional[Endpoint] = None
    rule: str = ""
    addresses: tuple[str, ...] = field(default=())
    #: every (rule key, endpoint) that allowed the connection, preferred first; the
    #: caller's destination check tries them in order (``openshell.policy.decide``)
    candidates: tuple[tuple[str, Endpoint], ...] = field(default=())

    @property
    def allowed(self) -> bool:
        """True for ``allow`` and ``audit``: the traffic goes through."""
        return self.action in ("allow", "audit")

    @classmethod
    def deny(cls, reason: str, *, error: str = "policy_denied", engine: str = "", policy: Optional[str] = None, rule: str = "") -> "Decision":
        """Build a denial."""
        return cls("deny", reason=reason, policy=policy, error=error, engine=engine, rule=rule)
