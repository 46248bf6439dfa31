"""gRPC service ``openshell.v1.OpenShell``: a thin mapping between protos and :class:`GatewayCore`.

``add_services(server, core)`` registers this servicer and the supervisor one.
Core exceptions become status codes here (:func:`abort_for`); nothing else is
decided in this module. Methods of the SDK's service that we do not declare
answer UNIMPLEMENTED (gRPC's answer for an unknown method).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import grpc
from google.protobuf import json_format, unknown_fields
from google.protobuf.timestamp_pb2 import Timestamp

from openshell._proto import datamodel_pb2, openshell_pb2, openshell_pb2_grpc
from openshell.gateway import core as gc
from openshell.gateway import store as st
from openshell.gateway.policy_service import PolicyRpcs
from openshell.gateway.provider_service import ProviderRpcs

log = logging.getLogger("openshell.gateway")

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

PHASE_TO_PROTO: dict[str, int] = {
    st.PROVISIONING: openshell_pb2.SANDBOX_PHASE_PROVISIONING,
    st.READY: openshell_pb2.SANDBOX_PHASE_READY,
    st.ERROR: openshell_pb2.SANDBOX_PHASE_ERROR,
    st.DELETING: openshell_pb2.SANDBOX_PHASE_DELETING,
    st.STOPPED: openshell_pb2.SANDBOX_PHASE_STOPPED,
}
PROTO_TO_PHASE = {v: k for k, v in PHASE_TO_PROTO.items()}

_OUTCOMES = {
    "COMPLETED": openshell_pb2.DELETION_OUTCOME_COMPLETED,
    "ACCEPTED": openshell_pb2.DELETION_OUTCOME_ACCEPTED,
    "ALREADY_ABSENT": openshell_pb2.DELETION_OUTCOME_ALREADY_ABSENT,
}

# Fields of the SDK's messages we deliberately do not implement. They arrive as
# unknown fields; refusing them beats silently ignoring them (a structured
# policy ignored would run the sandbox under the default policy).
_CREATE_UNSUPPORTED = {9: "service_exposures"}
_SPEC_UNSUPPORTED = {
    7: "spec.policy",
    9: "spec.resource_requirements",
}


async def abort_for(context: grpc.aio.ServicerContext, exc: gc.GatewayError) -> None:
    """Abort the call with the status code of ``exc`` and its message (never returns)."""
    await context.abort(_CODES.get(exc.code, grpc.StatusCode.INTERNAL), str(exc))


def timestamp(seconds: float) -> Timestamp:
    """Return a protobuf Timestamp for unix ``seconds``."""
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def sandbox_to_proto(info: gc.SandboxInfo) -> openshell_pb2.Sandbox:
    """Map a :class:`SandboxInfo` to the wire ``Sandbox`` (never the secret)."""
    r = info.record
    spec = r.spec
    ready = {st.READY: "True", st.ERROR: "False", st.STOPPED: "False"}.get(r.phase, "Unknown")
    return openshell_pb2.Sandbox(
        metadata=datamodel_pb2.ObjectMeta(
            id=r.id,
            name=r.name,
            workspace=r.workspace,
            labels=r.labels,
            annotations=r.annotations,
            resource_version=r.resource_version,
            created_time=timestamp(r.created_at),
        ),
        spec=openshell_pb2.SandboxSpec(
            log_level=str(spec.get("log_level", "")),
            environment=dict(spec.get("environment", {})),
            command=list(spec.get("command", [])),
            extra_hosts=list(spec.get("extra_hosts", [])),
            providers=list(spec.get("providers", [])),
            template=_template_to_proto(spec.get("resources") or {}),
        ),
        status=openshell_pb2.SandboxStatus(
            phase=PHASE_TO_PROTO.get(r.phase, openshell_pb2.SANDBOX_PHASE_UNKNOWN),
            current_policy_version=info.loaded_policy_revision,
            conditions=[
                openshell_pb2.SandboxCondition(
                    type="Ready",
                    status=ready,
                    reason=r.phase.capitalize(),
                    message=r.reason,
                    transition_time=timestamp(r.updated_at),
                )
            ],
        ),
    )


def exec_event_to_proto(ev: gc.ExecEvent) -> openshell_pb2.ExecSandboxEvent:
    """Map one core exec event (stdout/stderr/exit) to the wire event."""
    if ev.kind == "stdout":
        return openshell_pb2.ExecSandboxEvent(stdout=openshell_pb2.ExecSandboxStdout(data=ev.data))
    if ev.kind == "stderr":
        return openshell_pb2.ExecSandboxEvent(stderr=openshell_pb2.ExecSandboxStderr(data=ev.data))
    return openshell_pb2.ExecSandboxEvent(exit=openshell_pb2.ExecSandboxExit(exit_code=int(ev.exit_code or 0)))


def workspace_to_proto(ws: st.WorkspaceRecord) -> datamodel_pb2.Workspace:
    return datamodel_pb2.Workspace(
        metadata=datamodel_pb2.ObjectMeta(id=ws.id, name=ws.name, labels=ws.labels, created_time=timestamp(ws.created_at)),
        status=datamodel_pb2.WorkspaceStatus(phase=datamodel_pb2.WORKSPACE_PHASE_ACTIVE),
    )


def _workspace(scope: datamodel_pb2.WorkspaceSelector, *, allow_all: bool = False) -> str | None:
    """Return the workspace a request addresses: its name, or None for all (lists only)."""
    which = scope.WhichOneof("selection")
    if which == "all_workspaces":
        if not allow_all:
            raise gc.InvalidArgument("workspace_scope", "name one workspace; all_workspaces is only for listing")
        return None
    return scope.workspace or st.DEFAULT_WORKSPACE


#: SandboxTemplate fields of the SDK's schema other than resources (7): refused, not ignored
_TEMPLATE_UNSUPPORTED = {
    1: "spec.template.image",
    2: "spec.template.runtime_class_name",
    3: "spec.template.agent_socket",
    4: "spec.template.labels",
    5: "spec.template.annotations",
    6: "spec.template.environment",
    10: "spec.template.user_namespaces",
    11: "spec.template.driver_config",
}


def _refuse_unsupported(message: Any, unsupported: Mapping[int, str]) -> None:
    for field in unknown_fields.UnknownFieldSet(message):
        if field.field_number in unsupported:
            raise gc.InvalidArgument(
                unsupported[field.field_number],
                "not supported by this gateway; send a POLICY.md document in spec.policy_yaml (openshell CLI/SDK)"
                if field.field_number == 7
                else "not supported by this gateway",
            )


def spec_from_proto(spec: openshell_pb2.SandboxSpec) -> gc.SandboxSpec:
    """Map the wire ``SandboxSpec`` to :class:`openshell.gateway.core.SandboxSpec`."""
    _refuse_unsupported(spec, _SPEC_UNSUPPORTED)
    _refuse_unsupported(spec.template, _TEMPLATE_UNSUPPORTED)
    return gc.SandboxSpec(
        command=tuple(spec.command),
        environment=dict(spec.environment),
        extra_hosts=tuple(spec.extra_hosts),
        policy_yaml=spec.policy_yaml,
        log_level=spec.log_level,
        providers=tuple(spec.providers),
        resources=json_format.MessageToDict(spec.template.resources) if spec.HasField("template") else None,
    )


def _template_to_proto(resources: dict) -> openshell_pb2.SandboxTemplate | None:
    """The stored ``resources`` as ``SandboxSpec.template`` (None when there are none)."""
    if not resources:
        return None
    template = openshell_pb2.SandboxTemplate()
    template.resources.update(resources)
    return template


class OpenShellServicer(PolicyRpcs, ProviderRpcs, openshell_pb2_grpc.OpenShellServicer):
    """``openshell.v1.OpenShell`` over a :class:`GatewayCore`."""

    def __init__(self, core: gc.GatewayCore) -> None:
        self.core = core

    async def Health(self, request, context):
        return openshell_pb2.HealthResponse(status=openshell_pb2.SERVICE_STATUS_HEALTHY, version=self.core.health())

    async def CreateSandbox(self, request, context):
        try:
            _refuse_unsupported(request, _CREATE_UNSUPPORTED)
            if request.workload_template:
                raise gc.InvalidArgument("workload_template", "workload templates are not supported by this gateway")
            info = await self.core.create_sandbox(
                name=request.name,
                workspace=_workspace(request.workspace_scope),
                labels=dict(request.labels),
                annotations=dict(request.annotations),
                spec=spec_from_proto(request.spec),
            )
        except gc.GatewayError as exc:
            await abort_for(context, exc)
        return openshell_pb2.SandboxResponse(sandbox=sandbox_to_proto(info))

    async def GetSandbox(self, request, context):
        try:
            info = await self.core.get_sandbox(request.name, _workspace(request.workspace_scope))
        except gc.GatewayError as exc:
            await abort_for(context, exc)
        return openshell_pb2.SandboxResponse(sandbox=sandbox_to_proto(info))

    async def GetSandboxLogs(self, request, context):
        if request.sources and "supervisor" not in request.sources:
            return openshell_pb2.GetSandboxLogsResponse()
        since = request.since_time.ToNanoseconds() / 1e9 if request.HasField("since_time") else 0.0
        try:
            rows, total = await self.core.read_logs_filtered(
                request.sandbox,
                _workspace(request.workspace_scope),
                lines=min(int(request.lines) or 200, 10_000),
                min_level=request.min_level,
                since=since,
            )
        except gc.GatewayError as exc:
            await abort_for(context, exc)
        out = openshell_pb2.GetSandboxLogsResponse(buffer_total=total)
        for row in rows:
            line = out.logs.add(
                sandbox_id=row.get("sandbox_id", ""),
                level=str(row.get("level", "")),
                target=str(row.get("target", "")),
                message=str(row.get("message", "")),
                source="supervisor",
            )
            line.fields.update({str(k): str(v) for k, v in (row.get("fields") or {}).items()})
            line.event_time.FromNanoseconds(int(float(row.get("time") or 0) * 1e9))
        return out

    async def ListSandboxes(self, request, context):
        try:
            items, token = await self.core.list_sandboxes(
                _workspace(request.workspace_scope, allow_all=True),
                label_selector=request.label_selector,
                page_size=request.page_size,
                page_token=request.page_token,
            )
        except gc.GatewayError as exc:
            await abort_for(context, exc)
        return openshell_pb2.ListSandboxesResponse(sandboxes=[sandbox_to_proto(i) for i in items], next_page_token=token)

    async def DeleteSandbox(self, request, context):
        try:
            outcome, sandbox_id = await self.core.delete_sandbox(
                request.name,
                _workspace(request.workspace_scope),
                allow_missing=request.allow_missing,
                keep_workdir=request.keep_workdir,
            )
        except gc.GatewayError as exc:
            await abort_for(context, exc)
        return openshell_pb2.DeleteSandboxResponse(outcome=_OUTCOMES[outcome], sandbox_id=sandbox_id)

    async def ExecSandbox(self, request, context) -> AsyncIterator[openshell_pb2.ExecSandboxEvent]:
        async for ev in self._exec(request, request.stdin or None, context):
            yield ev

    async def ExecSandboxInteractive(self, request_iterator, context) -> AsyncIterator[openshell_pb2.ExecSandboxEvent]:
        """First input message ``start`` (an ExecSandboxRequest), then stdin chunks and resizes."""
        inputs = request_iterator.__aiter__()
        try:
            first = await inputs.__anext__()
        except StopAsyncIteration:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "start: the first message must be 'start'")
        if first.WhichOneof("payload") != "start":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "start: the first message must be 'start'")
        start = first.start

        async def stdin() -> AsyncIterator[bytes | tuple[int, int]]:
            if start.stdin:
                yield bytes(start.stdin)
            async for msg in inputs:
                which = msg.WhichOneof("payload")
                if which == "stdin":
                    yield bytes(msg.stdin)
                elif which == "resize":
                    yield (msg.resize.cols, msg.resize.rows)

        async for ev in self._exec(start, stdin(), context):
            yield ev

    async def _exec(self, req, stdin, context) -> AsyncIterator[openshell_pb2.ExecSandboxEvent]:
        """Run one ExecSandboxRequest with ``stdin``; stream events, ending at the exit event."""
        timeout = None
        if req.HasField("execution_timeout"):
            timeout = req.execution_timeout.ToTimedelta().total_seconds() or None
        try:
            events = self.core.exec_sandbox(
                req.sandbox,
                list(req.command),
                workspace=_workspace(req.workspace_scope),
                env=dict(req.environment),
                workdir=req.workdir or None,
                stdin=stdin,
                timeout=timeout,
                tty=req.tty,
                cols=req.cols,
                rows=req.rows,
            )
            async for ev in events:
                yield exec_event_to_proto(ev)
                if ev.kind == "exit":
                    return
        except gc.GatewayError as exc:
            await abort_for(context, exc)

    async def CreateSshSession(self, request, context):
        try:
            token, session, record = await self.core.create_ssh_session(request.sandbox, _workspace(request.workspace_scope))
        except gc.GatewayError as exc:
            await abort_for(context, exc)
        endpoint = urlsplit(getattr(self.core, "gateway_endpoint", "") or "")
        return openshell_pb2.CreateSshSessionResponse(
            sandbox_id=record.id,
            token=token,
            gateway_host=endpoint.hostname or "",
            gateway_port=endpoint.port or 0,
            gateway_scheme=endpoint.scheme or "",
            expiration_time=timestamp(session.expires_at),
        )

    async def RevokeSshSession(self, request, context):
        try:
            outcome = await self.core.revoke_ssh_session(request.token, allow_missing=request.allow_missing)
        except gc.GatewayError as exc:
            await abort_for(context, exc)
        return openshell_pb2.RevokeSshSessionResponse(outcome=_OUTCOMES[outcome])

    async def GetWorkspace(self, request, context):
        try:
            ws = await self.core.get_workspace(request.name)
        except gc.GatewayError as exc:
            await abort_for(context, exc)
        return openshell_pb2.GetWorkspaceResponse(workspace=workspace_to_proto(ws))

    async def ListWorkspaces(self, request, context):
        try:
            terms = gc.parse_label_selector(request.label_selector)
        except gc.GatewayError as exc:
            await abort_for(context, exc)
        # A handful of workspaces at most: one page, so the token is always empty.
        workspaces = [w for w in await self.core.list_workspaces() if all(t.matches(w.labels) for t in terms)]
        return openshell_pb2.ListWorkspacesResponse(workspaces=[workspace_to_proto(w) for w in workspaces])


def add_services(server: grpc.aio.Server, core: gc.GatewayCore) -> None:
    """Register ``openshell.v1.OpenShell``, ``openshell.v1.Supervisor`` and ``openshell.v1.Inference`` on ``server``."""
    from openshell._proto import supervisor_pb2_grpc
    from openshell.gateway.supervisor_service import SupervisorServicer

    openshell_pb2_grpc.add_OpenShellServicer_to_server(OpenShellServicer(core), server)
    supervisor_pb2_grpc.add_SupervisorServicer_to_server(SupervisorServicer(core), server)
    from openshell._proto import inference_pb2_grpc
    from openshell.gateway.provider_service import InferenceServicer

    inference_pb2_grpc.add_InferenceServicer_to_server(InferenceServicer(core), server)
