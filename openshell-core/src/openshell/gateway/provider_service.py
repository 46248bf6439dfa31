"""gRPC for providers (methods of ``openshell.v1.OpenShell``, mixed into
``service.OpenShellServicer``) and inference routes (service ``openshell.v1.Inference``,
:class:`InferenceServicer`).

Protos ↔ :class:`ProviderManager` calls only. Credential values travel client → gateway only: every answer
carries credential names with empty values.
"""

from __future__ import annotations

from openshell._proto import datamodel_pb2, inference_pb2, inference_pb2_grpc, openshell_pb2
from openshell.gateway import core as gc
from openshell.gateway import store as st
from openshell.gateway.labels import parse_label_selector
from openshell.gateway.providers import ProviderView
from openshell.gateway.wire import rpc_errors, timestamp, workspace_of
from openshell.plugin.loader import get_registry

_OUTCOMES = {
    "COMPLETED": openshell_pb2.DELETION_OUTCOME_COMPLETED,
    "ALREADY_ABSENT": openshell_pb2.DELETION_OUTCOME_ALREADY_ABSENT,
}


def provider_to_proto(view: ProviderView) -> datamodel_pb2.Provider:
    """Map a provider to the wire message with every credential value redacted (empty)."""
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
        credentials={k: "" for k in r.credential_keys},
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
    """Provider and inference-route RPCs; expects ``self.core`` (a GatewayCore)."""

    core: gc.GatewayCore

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
        views = await self.core.providers.list(workspace_of(request.workspace_scope, allow_all=True))
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
            remove_credentials=list(request.remove_credentials),
            remove_config=list(request.remove_config),
            labels=dict(p.metadata.labels) or None,
        )
        return openshell_pb2.ProviderResponse(provider=provider_to_proto(view))

    @rpc_errors
    async def DeleteProvider(self, request, context):
        outcome = await self.core.providers.delete(request.name, workspace_of(request.workspace_scope), allow_missing=request.allow_missing)
        return openshell_pb2.DeleteProviderResponse(outcome=_OUTCOMES[outcome])


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
