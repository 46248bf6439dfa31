"""Errors a client can cause, each naming its gRPC status in ``code``.

Raised by :mod:`openshell.gateway.core`, :mod:`openshell.gateway.providers` and
the label checks; :func:`openshell.gateway.wire.rpc_errors` turns them into a
status code, the message, and trailing metadata ``openshell-error-reason``
(``reason`` below: the client picks its exception class by it, never by the
message text) plus ``openshell-error-field`` for :class:`InvalidArgument`.
Imports nothing of the gateway but the default workspace's name, so every
gateway module can raise them.
"""

from __future__ import annotations

from openshell.gateway.store import DEFAULT_WORKSPACE


class GatewayError(Exception):
    """Base of the errors a client can cause; ``code`` names the gRPC status.

    ``reason`` (may be empty) tells apart errors sharing a code, e.g. a missing
    sandbox from a missing provider.
    """

    code = "INTERNAL"
    reason = ""


class NotFound(GatewayError):
    code = "NOT_FOUND"


class SandboxNotFound(NotFound):
    """The named sandbox does not exist (or no longer exists)."""

    reason = "SANDBOX_NOT_FOUND"

    def __init__(self, name: str, workspace: str = DEFAULT_WORKSPACE) -> None:
        where = "" if workspace == DEFAULT_WORKSPACE else f" in workspace '{workspace}'"
        super().__init__(f"sandbox '{name}' not found{where}; see 'openshell sandbox list'")
        self.name = name
        self.workspace = workspace


class ProviderNotFound(NotFound):
    """The named provider does not exist in the workspace."""

    reason = "PROVIDER_NOT_FOUND"

    def __init__(self, name: str) -> None:
        super().__init__(f"provider '{name}' not found; see 'openshell provider list'")
        self.name = name


class PolicyRevisionNotFound(NotFound):
    """The sandbox has no policy revision of that number."""

    reason = "POLICY_REVISION_NOT_FOUND"

    def __init__(self, sandbox: str, version: int) -> None:
        super().__init__(f"policy revision {version} of sandbox '{sandbox}' not found; see 'openshell policy list {sandbox}'")


class WorkspaceNotFound(NotFound):
    reason = "WORKSPACE_NOT_FOUND"

    def __init__(self, workspace: str) -> None:
        super().__init__(f"workspace '{workspace}' not found; see 'openshell workspace list'")
        self.workspace = workspace


class TemplateNotFound(NotFound):
    """The named sandbox template does not exist in the workspace."""

    reason = "TEMPLATE_NOT_FOUND"

    def __init__(self, name: str, workspace: str = DEFAULT_WORKSPACE) -> None:
        super().__init__(f"sandbox template '{name}' not found in workspace '{workspace}'")
        self.name = name
        self.workspace = workspace


class AlreadyExists(GatewayError):
    code = "ALREADY_EXISTS"


class InvalidArgument(GatewayError):
    """A request field is wrong. ``field`` is its path (``spec.policy_yaml``).

    ``violations`` holds every ``(field, message)`` problem (the first is
    ``field``/``message``); answers carry them as google.rpc BadRequest details.
    """

    code = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str, *, violations: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.violations = violations or ((field, message),)


class FailedPrecondition(GatewayError):
    code = "FAILED_PRECONDITION"


class SandboxNotReady(FailedPrecondition):
    """The sandbox is not in the phase the call needs (e.g. exec before READY)."""

    reason = "SANDBOX_NOT_READY"


class ProviderInUse(FailedPrecondition):
    """A sandbox or the inference route still uses the provider."""

    reason = "PROVIDER_IN_USE"


class WorkspaceNotEmpty(FailedPrecondition):
    """The workspace still holds sandboxes, providers or templates."""

    reason = "WORKSPACE_NOT_EMPTY"


class Unauthenticated(GatewayError):
    code = "UNAUTHENTICATED"


class Unavailable(GatewayError):
    code = "UNAVAILABLE"


class SandboxUnreachable(Unavailable):
    """The gateway could not reach the sandbox's supervisor."""

    reason = "SANDBOX_UNREACHABLE"


class ResourceExhausted(GatewayError):
    code = "RESOURCE_EXHAUSTED"


class DriverFailed(GatewayError):
    """The compute driver raised; the sandbox record keeps the reason."""

    code = "INTERNAL"
