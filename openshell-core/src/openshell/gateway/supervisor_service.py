"""gRPC service ``openshell.v1.Supervisor``: what supervisors ask and tell the gateway.

Every call carries metadata ``x-sandbox-id`` and ``x-sandbox-secret``; a call
reads or changes only the sandbox those name (UNAUTHENTICATED otherwise).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator

import grpc

from openshell import pki
from openshell._proto import openshell_pb2, supervisor_pb2, supervisor_pb2_grpc
from openshell.gateway import core as gc
from openshell.gateway import store as st
from openshell.gateway.wire import PROTO_TO_PHASE, rpc_errors
from openshell.logfmt import logfmt_fields

SANDBOX_ID_KEY = "x-sandbox-id"
SANDBOX_SECRET_KEY = "x-sandbox-secret"

_POLICY_STATUS = {
    supervisor_pb2.POLICY_LOAD_STATUS_LOADED: st.LOADED,
    supervisor_pb2.POLICY_LOAD_STATUS_FAILED: st.FAILED,
}


async def _identify(core: gc.GatewayCore, context: grpc.aio.ServicerContext) -> st.SandboxRecord:
    metadata = dict(context.invocation_metadata() or ())
    return await core.authenticate_supervisor(str(metadata.get(SANDBOX_ID_KEY, "")), str(metadata.get(SANDBOX_SECRET_KEY, "")))


def _revision(rev: st.PolicyRevision) -> supervisor_pb2.PolicyRevision:
    return supervisor_pb2.PolicyRevision(revision=rev.revision, policy_yaml=rev.yaml, policy_json=policy_json(rev.yaml))


@functools.lru_cache(maxsize=128)
def policy_json(document: str) -> str:
    """A stored policy document as JSON, or "" when JSON cannot carry it exactly (a
    key that is not a string, say): the supervisor then parses the YAML. Both go
    through the same validation there (``parse_policy``); JSON spares a starting
    supervisor the YAML parser's import (~25 ms in a container)."""
    from openshell.policy.yamlio import load_document

    try:
        doc = load_document(document)
        text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError):  # PolicyError is a ValueError; stored documents parsed once already
        return ""
    return text if doc is not None and json.loads(text) == doc else ""


class SupervisorServicer(supervisor_pb2_grpc.SupervisorServicer):
    """``openshell.v1.Supervisor`` over a :class:`GatewayCore`."""

    def __init__(self, core: gc.GatewayCore) -> None:
        self.core = core

    @rpc_errors
    async def GetSandboxConfig(self, request, context):
        record = await _identify(self.core, context)
        cfg = await self.core.supervisor_config(record)
        # The sandbox CA is made here (the gateway has cryptography loaded; ~2 ms)
        # so that a supervisor's start need not import it (~60 ms in a container).
        ca_cert, ca_key = await asyncio.to_thread(pki.make_sandbox_ca, cfg.name)
        return supervisor_pb2.GetSandboxConfigResponse(
            sandbox_id=cfg.sandbox_id,
            name=cfg.name,
            workspace=cfg.workspace,
            labels=cfg.labels,
            command=cfg.command,
            environment=cfg.environment,
            extra_hosts=cfg.extra_hosts,
            policy=_revision(cfg.policy),
            netns_index=cfg.netns_index,
            log_level=cfg.log_level,
            sandbox_ca_cert_pem=ca_cert,
            sandbox_ca_key_pem=ca_key,
        )

    @rpc_errors
    async def ReportStatus(self, request, context):
        record = await _identify(self.core, context)
        phase = None
        if request.phase != openshell_pb2.SANDBOX_PHASE_UNSPECIFIED:
            phase = PROTO_TO_PHASE.get(request.phase, openshell_pb2.SandboxPhase.Name(request.phase))
        kwargs = {}
        if request.HasField("policy") and request.policy.revision:
            kwargs = {
                "policy_revision": request.policy.revision,
                "policy_status": _POLICY_STATUS.get(request.policy.status, ""),
                "policy_error": request.policy.error,
            }
        await self.core.report_status(record, phase=phase, reason=request.reason, supervisor_pid=request.supervisor_pid, **kwargs)
        return supervisor_pb2.ReportStatusResponse()

    @rpc_errors
    async def WatchPolicy(self, request, context) -> AsyncIterator[supervisor_pb2.PolicyRevision]:
        record = await _identify(self.core, context)
        async for rev in self.core.watch_policy(record, request.after_revision):
            yield _revision(rev)

    @rpc_errors
    async def GetProviderEnvironment(self, request, context):
        record = await _identify(self.core, context)
        penv = await self.core.providers.provider_environment(record)
        return supervisor_pb2.ProviderEnvironment(
            environment=penv.environment,
            credentials=[
                supervisor_pb2.ProviderCredential(provider=c.provider, type=c.type, env_name=c.env_name, value=c.value, hosts=list(c.hosts))
                for c in penv.credentials
            ],
            revision=penv.revision,
        )

    @rpc_errors
    async def AckProviderEnvironment(self, request, context):
        record = await _identify(self.core, context)
        await self.core.providers.acknowledge(record.id, request.revision)
        return supervisor_pb2.AckProviderEnvironmentResponse()

    @rpc_errors
    async def WatchInferenceBundle(self, request, context) -> AsyncIterator[supervisor_pb2.InferenceBundle]:
        record = await _identify(self.core, context)
        async for b in self.core.providers.watch_inference(record, request.after_revision):
            yield supervisor_pb2.InferenceBundle(
                revision=b.revision,
                backend=b.backend,
                protocols=list(b.protocols),
                base_url=b.base_url,
                model=b.model,
                auth_headers=dict(b.auth_headers),
            )

    @rpc_errors
    async def PushLogBatch(self, request, context):
        record = await _identify(self.core, context)
        if len(request.records) > MAX_LOG_BATCH:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_LOG_BATCH} records per batch")
        accepted = await self.core.push_logs(record, [_log_line(item) for item in request.records])
        return supervisor_pb2.PushLogsResponse(accepted=accepted)

    @rpc_errors
    async def PushLogs(self, request_iterator, context):
        record = await _identify(self.core, context)
        accepted = 0
        batch: list[gc.LogLine] = []
        async for item in request_iterator:
            batch.append(_log_line(item))
            # Write in small batches: a long-lived stream must not hold lines in memory.
            if len(batch) >= 100:
                accepted += await self.core.push_logs(record, batch)
                batch = []
        if batch:
            accepted += await self.core.push_logs(record, batch)
        return supervisor_pb2.PushLogsResponse(accepted=accepted)


MAX_LOG_BATCH = 10_000  # records per PushLogBatch (a supervisor holds at most this many)


def _log_line(item) -> gc.LogLine:
    """A pushed ``LogRecord`` as a ``LogLine``; fields parsed from the logfmt message
    when the supervisor sent none (current supervisors never do)."""
    return gc.LogLine(
        time=item.time.ToNanoseconds() / 1e9 if item.HasField("time") else 0.0,
        level=item.level,
        target=item.target,
        message=item.message,
        fields=dict(item.fields) or logfmt_fields(item.message),
    )
