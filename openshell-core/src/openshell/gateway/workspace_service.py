"""Workspace RPCs of ``openshell.v1.OpenShell``: Create/Get/List/DeleteWorkspace.

A mixin of the servicer in ``service.py`` (expects ``self.core``); the logic is
in :mod:`openshell.gateway.workspaces` and the core.
"""

from __future__ import annotations

from openshell._proto import datamodel_pb2, openshell_pb2
from openshell.gateway import core as gc
from openshell.gateway import paging
from openshell.gateway import store as st
from openshell.gateway.labels import parse_label_selector
from openshell.gateway.wire import rpc_errors, timestamp

_OUTCOMES = {"COMPLETED": openshell_pb2.DELETION_OUTCOME_COMPLETED, "ALREADY_ABSENT": openshell_pb2.DELETION_OUTCOME_ALREADY_ABSENT}


def workspace_to_proto(ws: st.WorkspaceRecord) -> datamodel_pb2.Workspace:
    """Map a stored workspace to the wire ``Workspace`` (always ACTIVE: deletion is immediate)."""
    return datamodel_pb2.Workspace(
        metadata=datamodel_pb2.ObjectMeta(id=ws.id, name=ws.name, labels=ws.labels, created_time=timestamp(ws.created_at)),
        status=datamodel_pb2.WorkspaceStatus(phase=datamodel_pb2.WORKSPACE_PHASE_ACTIVE),
    )


class WorkspaceRpcs:
    """Workspace RPCs; expects ``self.core`` (a GatewayCore)."""

    core: gc.GatewayCore

    @rpc_errors
    async def CreateWorkspace(self, request, context):
        ws = await self.core.workspaces.create(request.name, dict(request.labels))
        return openshell_pb2.CreateWorkspaceResponse(workspace=workspace_to_proto(ws))

    @rpc_errors
    async def GetWorkspace(self, request, context):
        ws = await self.core.get_workspace(request.name)
        return openshell_pb2.GetWorkspaceResponse(workspace=workspace_to_proto(ws))

    @rpc_errors
    async def ListWorkspaces(self, request, context):
        terms = parse_label_selector(request.label_selector)
        matching = [w for w in await self.core.list_workspaces() if all(t.matches(w.labels) for t in terms)]
        items, token = paging.page(matching, lambda w: (w.name,), page_size=request.page_size, page_token=request.page_token, key_size=1)
        return openshell_pb2.ListWorkspacesResponse(workspaces=[workspace_to_proto(w) for w in items], next_page_token=token)

    @rpc_errors
    async def DeleteWorkspace(self, request, context):
        outcome = await self.core.workspaces.delete(request.name, allow_missing=request.allow_missing)
        return openshell_pb2.DeleteWorkspaceResponse(outcome=_OUTCOMES[outcome])
