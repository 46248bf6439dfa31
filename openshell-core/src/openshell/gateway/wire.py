"""What every gRPC servicer of the gateway shares: errors to status codes,
timestamps, workspace selectors, refusing fields we do not implement, phases.

Imports protos, :mod:`openshell.gateway.errors`, the store's constants and the
metadata keys the client reads (:mod:`openshell.client.errors`) only,
so the servicers (``service``, ``policy_service``, ``provider_service``,
``supervisor_service``) import it without importing each other.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, cast, overload

import grpc
from google.protobuf import unknown_fields
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2

from openshell._proto import datamodel_pb2, openshell_pb2
from openshell.client.errors import FIELD_KEY, REASON_KEY
from openshell.gateway import store as st
from openshell.gateway.errors import GatewayError, InvalidArgument

_CODES: dict[str, grpc.StatusCode] = {
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "ALREADY_EXISTS": grpc.StatusCode.ALREADY_EXISTS,
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "FAILED_PRECONDITION": grpc.StatusCode.FAILED_PRECONDITION,
    "UNAUTHENTICATED": grpc.StatusCode.UNAUTHENTICATED,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "INTERNAL": grpc.StatusCode.INTERNAL,
}

PHASE_TO_PROTO: dict[str, openshell_pb2.SandboxPhase] = {
    st.PROVISIONING: openshell_pb2.SANDBOX_PHASE_PROVISIONING,
    st.READY: openshell_pb2.SANDBOX_PHASE_READY,
    st.ERROR: openshell_pb2.SANDBOX_PHASE_ERROR,
    st.DELETING: openshell_pb2.SANDBOX_PHASE_DELETING,
    st.STOPPING: openshell_pb2.SANDBOX_PHASE_STOPPING,
    st.STOPPED: openshell_pb2.SANDBOX_PHASE_STOPPED,
}
PROTO_TO_PHASE = {v: k for k, v in PHASE_TO_PROTO.items()}

Method = TypeVar("Method", bound=Callable[..., Any])

#: trailing metadata gRPC reserves for the serialised ``google.rpc.Status``
STATUS_DETAILS_KEY = "grpc-status-details-bin"
#: ``ErrorInfo.domain`` of every error the gateway answers
ERROR_DOMAIN = "openshell.gateway"


async def abort_for(context: grpc.aio.ServicerContext, exc: GatewayError) -> None:
    """Abort the call with the status code of ``exc``, its message and its reason (never returns).

    The trailing metadata carries the reason (:data:`REASON_KEY`), the refused
    field (:data:`FIELD_KEY`) and the rich status (:func:`status_details`).
    """
    code = _CODES.get(exc.code, grpc.StatusCode.INTERNAL)
    metadata: list[tuple[str, str | bytes]] = []
    if exc.reason:
        metadata.append((REASON_KEY, exc.reason))
    if isinstance(exc, InvalidArgument):
        metadata.append((FIELD_KEY, exc.field))
    metadata.append((STATUS_DETAILS_KEY, status_details(code, exc).SerializeToString()))
    await context.abort(code, str(exc), trailing_metadata=tuple(metadata))


def status_details(code: grpc.StatusCode, exc: GatewayError) -> status_pb2.Status:
    """The ``google.rpc.Status`` of an error: code and message as the call's status,
    an ``ErrorInfo`` (reason: the error's reason, else the code's name; domain
    :data:`ERROR_DOMAIN`) and, for INVALID_ARGUMENT, a ``BadRequest`` listing
    every field violation."""
    status = status_pb2.Status(code=code.value[0], message=str(exc))
    info = error_details_pb2.ErrorInfo(reason=exc.reason or exc.code, domain=ERROR_DOMAIN)
    if isinstance(exc, InvalidArgument):
        info.metadata["field"] = exc.field
        bad = error_details_pb2.BadRequest(field_violations=[error_details_pb2.BadRequest.FieldViolation(field=f, description=m) for f, m in exc.violations])
        status.details.add().Pack(bad)
    status.details.add().Pack(info)
    return status


def rpc_errors(method: Method) -> Method:
    """Decorate a servicer method whose last argument is the call's ``context``
    (``(self, request, context)``): a :class:`GatewayError` it raises aborts the
    call with that error's status (:func:`abort_for`).

    Works on coroutine methods (unary answers) and async generators (streams).
    """
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(*args: Any) -> Any:
            try:
                async for item in method(*args):
                    yield item
            except GatewayError as exc:
                await abort_for(args[-1], exc)

        return cast(Method, stream)  # same signature (functools.wraps)

    @functools.wraps(method)
    async def unary(*args: Any) -> Any:
        try:
            return await method(*args)
        except GatewayError as exc:
            await abort_for(args[-1], exc)

    return cast(Method, unary)  # same signature (functools.wraps)


def timestamp(seconds: float) -> Timestamp:
    """Return a protobuf Timestamp for unix ``seconds``."""
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


@overload
def workspace_of(scope: datamodel_pb2.WorkspaceSelector, *, allow_all: Literal[False] = ...) -> str: ...
@overload
def workspace_of(scope: datamodel_pb2.WorkspaceSelector, *, allow_all: bool) -> str | None: ...
def workspace_of(scope: datamodel_pb2.WorkspaceSelector, *, allow_all: bool = False) -> str | None:
    """Return the workspace a request addresses: its name, or None for all (lists only).

    :raises InvalidArgument: ``all_workspaces`` without ``allow_all``.
    """
    which = scope.WhichOneof("selection")
    if which == "all_workspaces":
        if not allow_all:
            raise InvalidArgument("workspace_scope", "name one workspace; all_workspaces is only for listing")
        return None
    return scope.workspace or st.DEFAULT_WORKSPACE


def refuse_unsupported(message: Any, unsupported: Mapping[int, str]) -> None:
    """Refuse a message carrying a field of the SDK we do not implement (``{number: name}``).

    Such fields arrive as unknown fields; ignoring them would silently run
    something the user did not ask for (GPUs: a sandbox without them).

    :raises InvalidArgument: naming the first such field.
    """
    fields = unknown_fields.UnknownFieldSet(message)
    for field in (fields[i] for i in range(len(fields))):  # the stubs give it no __iter__
        if field.field_number in unsupported:
            raise InvalidArgument(unsupported[field.field_number], "not supported by this gateway")
