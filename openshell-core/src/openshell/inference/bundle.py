"""An inference route as the gateway sends it (``Supervisor.WatchInferenceBundle``) and the
supervisor's ``inference.local`` router forwards to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from openshell._proto import supervisor_pb2


@dataclass(frozen=True)
class RouteBundle:
    """One inference route as the supervisor holds it (memory only).

    :ivar revision: 0 means "no route configured" (every call answers 503).
    :ivar backend: backend plugin name, for messages and logs.
    :ivar protocols: ``openai`` and/or ``anthropic``.
    :ivar base_url: including the version prefix (``http://127.0.0.1:8000/v1``).
    :ivar model: the model id written into every request body.
    :ivar auth_headers: injected into every backend request (secret; not in repr).
    """

    revision: int = 0
    backend: str = ""
    protocols: tuple[str, ...] = ()
    base_url: str = ""
    model: str = ""
    auth_headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_proto(cls, msg: supervisor_pb2.InferenceBundle) -> RouteBundle:
        """Build from a ``supervisor_pb2.InferenceBundle``."""
        return cls(msg.revision, msg.backend, tuple(msg.protocols), msg.base_url, msg.model, dict(msg.auth_headers))
