"""The client's exceptions: one fixed hierarchy, chosen by gRPC status code and
the reason the gateway sends (never by matching message text).

    OpenShellError (RuntimeError)            every client error; str() is one line for the user
    ├── GatewayUnavailable                   the gateway does not answer
    ├── NotFound (LookupError)               something named does not exist
    │   ├── SandboxNotFound
    │   ├── ProviderNotFound
    │   └── PolicyRevisionNotFound
    ├── SandboxExists                        ALREADY_EXISTS (a sandbox or a provider name is taken)
    ├── InvalidRequest (ValueError)          INVALID_ARGUMENT; ``field`` names the field
    ├── SandboxNotReady                      FAILED_PRECONDITION about a sandbox
    ├── ProviderInUse                        a provider still used by a sandbox or the inference route
    ├── SandboxUnreachable                   the gateway could not reach the sandbox
    ├── WaitTimeout (TimeoutError)
    └── PolicyFailed

The gateway sends the reason as trailing metadata :data:`REASON_KEY` (and the
refused field as :data:`FIELD_KEY`); see :mod:`openshell.gateway.errors`.
They are importable from :mod:`openshell.client.sdk` too.
"""

from __future__ import annotations

import re
from typing import cast

import grpc

#: trailing metadata: why the call failed, finer than the status code (``SANDBOX_NOT_FOUND``)
REASON_KEY = "openshell-error-reason"
#: trailing metadata: the request field an INVALID_ARGUMENT refers to
FIELD_KEY = "openshell-error-field"


class OpenShellError(RuntimeError):
    """Base of every client error; ``str(err)`` is one line for the user."""


class GatewayUnavailable(OpenShellError):
    """The gateway does not answer (not started, wrong endpoint, or TLS refused)."""


class NotFound(OpenShellError, LookupError):
    """Something the call named does not exist."""


class SandboxNotFound(NotFound):
    """The named sandbox does not exist."""

    def __init__(self, name: str, message: str = "") -> None:
        super().__init__(message or f"sandbox '{name}' not found; see 'openshell sandbox list'")
        self.name = name


class ProviderNotFound(NotFound):
    """The named provider does not exist in the client's workspace."""


class PolicyRevisionNotFound(NotFound):
    """The sandbox has no policy revision of that number."""


class SandboxExists(OpenShellError):
    """A sandbox (or provider) with that name exists already."""


class InvalidRequest(OpenShellError, ValueError):
    """The gateway refused a field; ``field`` names it (``spec.policy_yaml.network_policies.x``)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        if field is None:
            field = message.split(":", 1)[0] if ":" in message else ""
        self.field = field


class SandboxNotReady(OpenShellError):
    """The sandbox is not READY (exec refused), or went to ERROR while waiting."""


class ProviderInUse(OpenShellError):
    """A sandbox or the inference route still uses the provider (delete or change them first)."""


class SandboxUnreachable(OpenShellError):
    """The gateway could not reach the sandbox's supervisor."""


class WaitTimeout(OpenShellError, TimeoutError):
    """``wait_ready`` (or ``wait_policy``) ran out of time."""


class PolicyFailed(OpenShellError):
    """The supervisor could not load a policy revision; the previous one stays in force.

    :ivar revision: the failed :class:`openshell.client.policies.PolicyRevision` (``.error`` says why).
    """

    def __init__(self, message: str, revision: object) -> None:
        super().__init__(message)
        self.revision = revision


#: gateway reason → class whose constructor takes the gateway's message
_BY_REASON: dict[str, type[OpenShellError]] = {
    "PROVIDER_NOT_FOUND": ProviderNotFound,
    "POLICY_REVISION_NOT_FOUND": PolicyRevisionNotFound,
    "PROVIDER_IN_USE": ProviderInUse,
    "SANDBOX_NOT_READY": SandboxNotReady,
    "SANDBOX_UNREACHABLE": SandboxUnreachable,
}
#: status code → class, for answers without a reason of :data:`_BY_REASON`
_BY_CODE: dict[grpc.StatusCode, type[OpenShellError]] = {
    grpc.StatusCode.ALREADY_EXISTS: SandboxExists,
    grpc.StatusCode.FAILED_PRECONDITION: SandboxNotReady,
}


def error_from_rpc(exc: grpc.RpcError, *, gateway: str, endpoint: str, sandbox: str | None = None) -> OpenShellError:
    """Return the :class:`OpenShellError` for a failed call.

    :param gateway: how to name the gateway in a GatewayUnavailable message (``gateway 'dev'``).
    :param endpoint: the address the client dialled (for that message).
    :param sandbox: the sandbox the call named, for :class:`SandboxNotFound`.
    """
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else str(exc)) or ""
    # grpc-stubs types RpcError's trailing metadata as objects with .key/.value; at run
    # time they are (key, value) pairs (grpc's _Metadatum is a namedtuple), as on any Call.
    trailing = cast("grpc.Metadata", exc.trailing_metadata()) if hasattr(exc, "trailing_metadata") else None
    meta = {k: v for k, v in (trailing or ()) if isinstance(v, str)}
    reason = meta.get(REASON_KEY, "")
    if reason == "SANDBOX_NOT_FOUND" and sandbox is not None:
        return SandboxNotFound(sandbox)
    if reason in _BY_REASON:
        return _BY_REASON[reason](details)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        # No reason: the answer came from gRPC itself, not from a gateway that answered.
        # The hint names the gateway: a bare 'gateway start' would start (and select) the default one.
        m = re.fullmatch(r"gateway '([A-Za-z0-9_.-]+)'", gateway)
        start = f"openshell gateway start {m.group(1)}" if m else "openshell gateway start"
        return GatewayUnavailable(
            f"{gateway} at {endpoint} is not reachable ({details or code.name}); start it with '{start}' or check 'openshell gateway status'"
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidRequest(details, meta.get(FIELD_KEY))
    if code in _BY_CODE:
        return _BY_CODE[code](details)
    suffixed = f"{details} ({code.name if code else 'error'})"
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(suffixed)
    return OpenShellError(suffixed)
