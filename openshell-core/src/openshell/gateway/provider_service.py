"""gRPC for providers (methods of ``openshell.v1.OpenShell``, mixed into
``service.OpenShellServicer``) and inference routes (service ``openshell.v1.Inference``,
:class:`InferenceServicer`).

Protos ↔ :class:`ProviderManager` calls only. Credential values travel client → gateway only: every answer
carries credential names with the value :data:`REDACTED`.
"""

from __future__ import annotations

from collections.abc import Callable

from openshell._proto import datamodel_pb2, inference_pb2, inference_pb2_grpc, openshell_pb2
from openshell.gateway import core as gc
from openshell.gateway import store as st
from openshell.gateway.labels import parse_label_selector
from openshell.gateway.providers import ProviderView
from openshell.gateway.wire import rpc_errors, timestamp, workspace_of
from openshell.plugin.loader import get_registry

#: the value every credential key carries in answers (the SDK's convention; never the secret)
REDACTED = "REDACTED"

_OUTCOMES = {
    "COMPLETED": openshell_pb2.DELETION_OUTCOME_COMPLETED,
    "ALREADY_ABSENT": openshell_pb2.DELETION_OUTCOME_ALREADY_ABSENT,
}


def provider_to_proto(view: ProviderView) -> datamodel_pb2.Provider:
    """Map a provider to the wire message, every credential value replaced by :data:`REDACTED`."""
    r = view.record
    return datamodel_pb2.Provider(
        metadata=datamodel_pb2.ObjectMeta(
            id=r.id,
            name=r.name,
            workspace=r.workspace,
            labels=r.labels,
            resource_version=r.resource_version,
            created_time=timestamp(r.created_at),
        ),
        type=r.type,
        credentials=dict.fromkeys(r.credential_keys, REDACTED),
        config=r.config,
    )


def route_to_proto(route: st.InferenceRouteRecord | None) -> inference_pb2.InferenceRouteResponse:
    """Map a stored route (or None) to the wire answer, with the backend's protocols."""
    if route is None:
        return inference_pb2.InferenceRouteResponse()
    protocols: list[str] = []
    try:
        protocols = list(get_registry().get_class("inference", route.backend).protocols)
    except Exception:  # noqa: BLE001 - backend uninstalled since: show the route anyway
        pass
    return inference_pb2.InferenceRouteResponse(
        route=inference_pb2.InferenceRoute(
            backend=route.backend,
            model=route.model,
            base_url=route.base_url,
            provider=route.provider,
            protocols=protocols,
        ),
        revision=route.revision,
    )


class ProviderRpcs:
    """Provider and inference-route RPCs; expects ``self.core`` (a GatewayCore) and
    ``self.sandbox_to_proto`` (service.py's mapping of a ``SandboxInfo``)."""

    core: gc.GatewayCore
    sandbox_to_proto: Callable[[gc.SandboxInfo], openshell_pb2.Sandbox]

    @rpc_errors
    async def CreateProvider(self, request, context):
        p = request.provider
        view = await self.core.providers.create(
            name=p.metadata.name,
            type=p.type or "generic",
            workspace=workspace_of(request.workspace_scope),
            credentials=dict(p.credentials),
            config=dict(p.config),
            labels=dict(p.metadata.labels),
        )
        return openshell_pb2.ProviderResponse(provider=provider_to_proto(view))

    @rpc_errors
    async def GetProvider(self, request, context):
        view = await self.core.providers.get(request.name, workspace_of(request.workspace_scope))
        return openshell_pb2.ProviderResponse(provider=provider_to_proto(view))

    @rpc_errors
    async def ListProviders(self, request, context):
        terms = parse_label_selector(request.label_selector)
        workspace = workspace_of(request.workspace_scope, allow_all=True)
        if workspace is not None:
            await self.core.get_workspace(workspace)  # an unknown one is NOT_FOUND, as for sandboxes
        views = await self.core.providers.list(workspace)
        # Providers are few: one page, so the token is always empty.
        views = [v for v in views if all(t.matches(v.record.labels) for t in terms)]
        return openshell_pb2.ListProvidersResponse(providers=[provider_to_proto(v) for v in views])

    @rpc_errors
    async def UpdateProvider(self, request, context):
        p = request.provider
        view = await self.core.providers.update(
            p.metadata.name,
            workspace_of(request.workspace_scope),
            credentials=dict(p.credentials),
            config=dict(p.config),
            type=p.type,
            remove_credentials=list(request.remove_credentials),
            remove_config=list(request.remove_config),
            labels=dict(p.metadata.labels) or None,
        )
        return openshell_pb2.ProviderResponse(provider=provider_to_proto(view))

    @rpc_errors
    async def DeleteProvider(self, request, context):
        outcome = await self.core.providers.delete(request.name, workspace_of(request.workspace_scope), allow_missing=request.allow_missing)
        return openshell_pb2.DeleteProviderResponse(outcome=_OUTCOMES[outcome])

    # ------------------------------------------------------------------ providers of a sandbox

    @rpc_errors
    async def ListSandboxProviders(self, request, context):
        record = await self.core.sandbox_record(request.sandbox, workspace_of(request.workspace_scope))
        views = await self.core.providers.attached(record)
        # A sandbox has few providers: one page, so the token is always empty.
        return openshell_pb2.ListSandboxProvidersResponse(providers=[provider_to_proto(v) for v in views])

    async def _set_attachment(self, request, attach: bool) -> tuple[openshell_pb2.Sandbox, bool]:
        record = await self.core.sandbox_record(request.sandbox, workspace_of(request.workspace_scope))
        record, changed = await self.core.providers.set_attachment(
            record, request.provider, attach=attach, expected_resource_version=request.expected_resource_version
        )
        info = await self.core.sandbox_info(record)
        return self.sandbox_to_proto(info), changed

    @rpc_errors
    async def AttachSandboxProvider(self, request, context):
        sandbox, changed = await self._set_attachment(request, True)
        return openshell_pb2.AttachSandboxProviderResponse(sandbox=sandbox, attached=changed)

    @rpc_errors
    async def DetachSandboxProvider(self, request, context):
        sandbox, changed = await self._set_attachment(request, False)
        return openshell_pb2.DetachSandboxProviderResponse(sandbox=sandbox, detached=changed)


class InferenceServicer(inference_pb2_grpc.InferenceServicer):
    """``openshell.v1.Inference`` over a :class:`GatewayCore` (our own service: the SDK has none)."""

    def __init__(self, core: gc.GatewayCore) -> None:
        self.core = core

    @rpc_errors
    async def SetInferenceRoute(self, request, context):
        r = request.route
        route = await self.core.providers.set_route(
            workspace_of(request.workspace_scope),
            backend=r.backend,
            model=r.model,
            base_url=r.base_url,
            provider=r.provider,
        )
        return route_to_proto(route)

    @rpc_errors
    async def GetInferenceRoute(self, request, context):
        route = await self.core.providers.get_route(workspace_of(request.workspace_scope))
        return route_to_proto(route)
