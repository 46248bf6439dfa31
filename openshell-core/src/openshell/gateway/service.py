"""gRPC service ``openshell.v1.OpenShell``: a thin mapping between protos and :class:`GatewayCore`.

``add_services(server, core)`` registers this servicer and the supervisor one.
Core exceptions become status codes through :func:`openshell.gateway.wire.rpc_errors`;
nothing else is decided in this module. Methods of the SDK's service that we do not declare
answer UNIMPLEMENTED (gRPC's answer for an unknown method).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import grpc
from google.protobuf import json_format

from openshell._proto import datamodel_pb2, inference_pb2_grpc, openshell_pb2, openshell_pb2_grpc, supervisor_pb2_grpc
from openshell.gateway import core as gc
from openshell.gateway import store as st
from openshell.gateway.labels import parse_label_selector
from openshell.gateway.policy_service import PolicyRpcs
from openshell.gateway.provider_service import InferenceServicer, ProviderRpcs
from openshell.gateway.supervisor_service import SupervisorServicer
from openshell.gateway.watch_service import watch_sandbox
from openshell.gateway.wire import PHASE_TO_PROTO, refuse_unsupported, rpc_errors, timestamp, workspace_of

log = logging.getLogger("openshell.gateway")

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


def sandbox_to_proto(info: gc.SandboxInfo) -> openshell_pb2.Sandbox:
    """Map a :class:`SandboxInfo` to the wire ``Sandbox`` (never the secret)."""
    r = info.record
    spec = r.spec
    ready = {st.READY: "True", st.ERROR: "False", st.STOPPING: "False", st.STOPPED: "False"}.get(r.phase, "Unknown")
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


def spec_from_proto(spec: openshell_pb2.SandboxSpec) -> gc.SandboxSpec:
    """Map the wire ``SandboxSpec`` to :class:`openshell.gateway.core.SandboxSpec`."""
    refuse_unsupported(spec, _SPEC_UNSUPPORTED)
    refuse_unsupported(spec.template, _TEMPLATE_UNSUPPORTED)
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

    @rpc_errors
    async def CreateSandbox(self, request, context):
        refuse_unsupported(request, _CREATE_UNSUPPORTED)
        if request.workload_template:
            raise gc.InvalidArgument("workload_template", "workload templates are not supported by this gateway")
        info = await self.core.create_sandbox(
            name=request.name,
            workspace=workspace_of(request.workspace_scope),
            labels=dict(request.labels),
            annotations=dict(request.annotations),
            spec=spec_from_proto(request.spec),
        )
        return openshell_pb2.SandboxResponse(sandbox=sandbox_to_proto(info))

    @rpc_errors
    async def GetSandbox(self, request, context):
        info = await self.core.get_sandbox(request.name, workspace_of(request.workspace_scope))
        return openshell_pb2.SandboxResponse(sandbox=sandbox_to_proto(info))

    @rpc_errors
    async def GetSandboxLogs(self, request, context):
        if request.sources and "supervisor" not in request.sources:
            return openshell_pb2.GetSandboxLogsResponse()
        since = request.since_time.ToNanoseconds() / 1e9 if request.HasField("since_time") else 0.0
        rows, total = await self.core.read_logs_filtered(
            request.sandbox,
            workspace_of(request.workspace_scope),
            lines=min(int(request.lines) or 200, 10_000),
            min_level=request.min_level,
            since=since,
        )
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

    @rpc_errors
    async def ListSandboxes(self, request, context):
        items, token = await self.core.list_sandboxes(
            workspace_of(request.workspace_scope, allow_all=True),
            label_selector=request.label_selector,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return openshell_pb2.ListSandboxesResponse(sandboxes=[sandbox_to_proto(i) for i in items], next_page_token=token)

    @rpc_errors
    async def DeleteSandbox(self, request, context):
        outcome, sandbox_id = await self.core.delete_sandbox(
            request.name,
            workspace_of(request.workspace_scope),
            allow_missing=request.allow_missing,
            keep_workdir=request.keep_workdir,
        )
        return openshell_pb2.DeleteSandboxResponse(outcome=_OUTCOMES[outcome], sandbox_id=sandbox_id)

    @rpc_errors
    async def StopSandbox(self, request, context):
        info = await self.core.stop_sandbox(request.name, workspace_of(request.workspace_scope))
        return openshell_pb2.SandboxResponse(sandbox=sandbox_to_proto(info))

    @rpc_errors
    async def StartSandbox(self, request, context):
        info = await self.core.start_sandbox(request.name, workspace_of(request.workspace_scope))
        return openshell_pb2.SandboxResponse(sandbox=sandbox_to_proto(info))

    @rpc_errors
    async def WatchSandbox(self, request, context) -> AsyncIterator[openshell_pb2.SandboxStreamEvent]:
        async for ev in watch_sandbox(self.core, request, sandbox_to_proto):
            yield ev

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

    @rpc_errors
    async def _exec(self, req, stdin, context) -> AsyncIterator[openshell_pb2.ExecSandboxEvent]:
        """Run one ExecSandboxRequest with ``stdin``; stream events, ending at the exit event."""
        timeout = None
        if req.HasField("execution_timeout"):
            timeout = req.execution_timeout.ToTimedelta().total_seconds() or None
        events = self.core.exec_sandbox(
            req.sandbox,
            list(req.command),
            workspace=workspace_of(req.workspace_scope),
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

    @rpc_errors
    async def CreateSshSession(self, request, context):
        token, session, record = await self.core.create_ssh_session(request.sandbox, workspace_of(request.workspace_scope))
        endpoint = urlsplit(getattr(self.core, "gateway_endpoint", "") or "")
        return openshell_pb2.CreateSshSessionResponse(
            sandbox_id=record.id,
            token=token,
            gateway_host=endpoint.hostname or "",
            gateway_port=endpoint.port or 0,
            gateway_scheme=endpoint.scheme or "",
            expiration_time=timestamp(session.expires_at),
        )

    @rpc_errors
    async def RevokeSshSession(self, request, context):
        outcome = await self.core.revoke_ssh_session(request.token, allow_missing=request.allow_missing)
        return openshell_pb2.RevokeSshSessionResponse(outcome=_OUTCOMES[outcome])

    @rpc_errors
    async def GetWorkspace(self, request, context):
        ws = await self.core.get_workspace(request.name)
        return openshell_pb2.GetWorkspaceResponse(workspace=workspace_to_proto(ws))

    @rpc_errors
    async def ListWorkspaces(self, request, context):
        terms = parse_label_selector(request.label_selector)
        # A handful of workspaces at most: one page, so the token is always empty.
        workspaces = [w for w in await self.core.list_workspaces() if all(t.matches(w.labels) for t in terms)]
        return openshell_pb2.ListWorkspacesResponse(workspaces=[workspace_to_proto(w) for w in workspaces])


def add_services(server: grpc.aio.Server, core: gc.GatewayCore) -> None:
    """Register ``openshell.v1.OpenShell``, ``openshell.v1.Supervisor`` and ``openshell.v1.Inference`` on ``server``."""
    openshell_pb2_grpc.add_OpenShellServicer_to_server(OpenShellServicer(core), server)
    supervisor_pb2_grpc.add_SupervisorServicer_to_server(SupervisorServicer(core), server)
    inference_pb2_grpc.add_InferenceServicer_to_server(InferenceServicer(core), server)
