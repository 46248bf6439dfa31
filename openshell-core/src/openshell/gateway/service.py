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
from openshell.gateway.info_service import InfoRpcs
from openshell.gateway.policy_proto import sandbox_policy, spec_policy_yaml
from openshell.gateway.policy_service import PolicyRpcs
from openshell.gateway.provider_service import InferenceServicer, ProviderRpcs
from openshell.gateway.supervisor_service import SupervisorServicer
from openshell.gateway.template_service import TemplateRpcs
from openshell.gateway.templates import check_image
from openshell.gateway.watch_service import watch_sandbox
from openshell.gateway.wire import PHASE_TO_PROTO, refuse_unsupported, rpc_errors, timestamp, workspace_of
from openshell.gateway.workspace_service import WorkspaceRpcs

log = logging.getLogger("openshell.gateway")

_OUTCOMES = {
    "COMPLETED": openshell_pb2.DELETION_OUTCOME_COMPLETED,
    "ACCEPTED": openshell_pb2.DELETION_OUTCOME_ACCEPTED,
    "ALREADY_ABSENT": openshell_pb2.DELETION_OUTCOME_ALREADY_ABSENT,
}

# Fields of the SDK's messages we deliberately do not implement. They arrive as
# unknown fields; refusing them beats silently ignoring them (GPUs ignored
# would run the sandbox without the GPUs it asked for).
_CREATE_UNSUPPORTED = {9: "service_exposures"}
_SPEC_UNSUPPORTED = {
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
            template=_template_to_proto(spec.get("resources") or {}, spec.get("image", "")),
        ),
        status=openshell_pb2.SandboxStatus(
            phase=PHASE_TO_PROTO.get(r.phase, openshell_pb2.SANDBOX_PHASE_UNKNOWN),
            current_policy_version=info.loaded_policy_revision,
            compute_driver=r.driver,
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
        created_from_workload_template=_provenance_to_proto(spec.get("workload_template")),
    )


def exec_event_to_proto(ev: gc.ExecEvent) -> openshell_pb2.ExecSandboxEvent:
    """Map one core exec event (stdout/stderr/exit) to the wire event."""
    if ev.kind == "stdout":
        return openshell_pb2.ExecSandboxEvent(stdout=openshell_pb2.ExecSandboxStdout(data=ev.data))
    if ev.kind == "stderr":
        return openshell_pb2.ExecSandboxEvent(stderr=openshell_pb2.ExecSandboxStderr(data=ev.data))
    return openshell_pb2.ExecSandboxEvent(exit=openshell_pb2.ExecSandboxExit(exit_code=int(ev.exit_code or 0)))


#: SandboxTemplate fields of the SDK's schema other than image (1) and resources (7): refused, not ignored
_TEMPLATE_UNSUPPORTED = {
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
        policy_yaml=spec_policy_yaml(spec),
        log_level=spec.log_level,
        providers=tuple(spec.providers),
        resources=json_format.MessageToDict(spec.template.resources) if spec.template.HasField("resources") else None,
        image=check_image(spec.template.image, "spec.template.image"),
    )


def _template_to_proto(resources: dict, image: str = "") -> openshell_pb2.SandboxTemplate | None:
    """The stored ``resources`` and ``image`` as ``SandboxSpec.template`` (None when there are neither)."""
    if not resources and not image:
        return None
    template = openshell_pb2.SandboxTemplate(image=image)
    if resources:
        template.resources.update(resources)
    return template


def _provenance_to_proto(source: dict | None) -> openshell_pb2.SandboxWorkloadTemplateProvenance | None:
    """The stored ``workload_template`` (``{"name", "resource_version"}``) as the wire provenance."""
    if not source:
        return None
    return openshell_pb2.SandboxWorkloadTemplateProvenance(name=source["name"], resource_version=str(source["resource_version"]))


class OpenShellServicer(PolicyRpcs, ProviderRpcs, WorkspaceRpcs, TemplateRpcs, InfoRpcs, openshell_pb2_grpc.OpenShellServicer):
    """``openshell.v1.OpenShell`` over a :class:`GatewayCore`."""

    sandbox_to_proto = staticmethod(sandbox_to_proto)

    def __init__(self, core: gc.GatewayCore) -> None:
        self.core = core

    async def Health(self, request, context):
        return openshell_pb2.HealthResponse(status=openshell_pb2.SERVICE_STATUS_HEALTHY, version=self.core.health())

    @rpc_errors
    async def CreateSandbox(self, request, context):
        refuse_unsupported(request, _CREATE_UNSUPPORTED)
        info = await self.core.create_sandbox(
            name=request.name,
            workspace=workspace_of(request.workspace_scope),
            labels=dict(request.labels),
            annotations=dict(request.annotations),
            spec=spec_from_proto(request.spec),
            workload_template=request.workload_template,
        )
        sandbox = sandbox_to_proto(info)
        if (policy := await sandbox_policy(self.core, info.record.name, info.record.workspace)) is not None:
            sandbox.spec.policy.CopyFrom(policy)
        return openshell_pb2.SandboxResponse(sandbox=sandbox)

    @rpc_errors
    async def GetSandbox(self, request, context):
        info = await self.core.get_sandbox(request.name, workspace_of(request.workspace_scope))
        sandbox = sandbox_to_proto(info)
        if (policy := await sandbox_policy(self.core, info.record.name, info.record.workspace)) is not None:
            sandbox.spec.policy.CopyFrom(policy)
        return openshell_pb2.SandboxResponse(sandbox=sandbox)

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


def add_services(server: grpc.aio.Server, core: gc.GatewayCore) -> None:
    """Register ``openshell.v1.OpenShell``, ``openshell.v1.Supervisor`` and ``openshell.v1.Inference`` on ``server``."""
    openshell_pb2_grpc.add_OpenShellServicer_to_server(OpenShellServicer(core), server)
    supervisor_pb2_grpc.add_SupervisorServicer_to_server(SupervisorServicer(core), server)
    inference_pb2_grpc.add_InferenceServicer_to_server(InferenceServicer(core), server)
