"""Sandbox template RPCs of ``openshell.v1.OpenShell``: Create/Get/List/DeleteSandboxTemplate.

A mixin of the servicer in ``service.py`` (expects ``self.core``); the logic is
in :mod:`openshell.gateway.templates`. Fields of the SDK's template we do not
implement (driver_config, desired_service_level, GPUs) are refused, not ignored.
"""

from __future__ import annotations

from openshell._proto import datamodel_pb2, openshell_pb2
from openshell.gateway import core as gc
from openshell.gateway import paging
from openshell.gateway import store as st
from openshell.gateway.labels import parse_label_selector
from openshell.gateway.templates import TemplateInput
from openshell.gateway.wire import refuse_unsupported, rpc_errors, timestamp, workspace_of

_OUTCOMES = {"COMPLETED": openshell_pb2.DELETION_OUTCOME_COMPLETED, "ALREADY_ABSENT": openshell_pb2.DELETION_OUTCOME_ALREADY_ABSENT}

_SPEC_UNSUPPORTED = {2: "template.spec.driver_config", 3: "template.spec.desired_service_level"}
_RESOURCES_UNSUPPORTED = {3: "template.spec.workload.resources.gpu"}


def template_to_proto(t: st.TemplateRecord) -> openshell_pb2.SandboxWorkloadTemplate:
    """Map a stored template to the wire ``SandboxWorkloadTemplate``."""
    spec = t.spec
    limits = (spec.get("resources") or {}).get("limits", {})
    return openshell_pb2.SandboxWorkloadTemplate(
        metadata=datamodel_pb2.ObjectMeta(
            id=t.id,
            name=t.name,
            workspace=t.workspace,
            labels=t.labels,
            annotations=t.annotations,
            resource_version=t.resource_version,
            created_time=timestamp(t.created_at),
        ),
        spec=openshell_pb2.SandboxWorkloadTemplateSpec(
            workload=openshell_pb2.SandboxWorkloadConfig(
                image=spec.get("image", ""),
                environment=spec.get("environment", {}),
                resources=openshell_pb2.SandboxResources(cpu=str(limits.get("cpu", "")), memory=str(limits.get("memory", ""))),
            ),
            policy_yaml=spec.get("policy_yaml", ""),
        ),
    )


def template_from_proto(t: openshell_pb2.SandboxWorkloadTemplate) -> TemplateInput:
    """Map the wire template to :class:`TemplateInput`. :raises InvalidArgument: an unsupported field."""
    refuse_unsupported(t.spec, _SPEC_UNSUPPORTED)
    workload = t.spec.workload
    refuse_unsupported(workload.resources, _RESOURCES_UNSUPPORTED)
    return TemplateInput(
        name=t.metadata.name,
        labels=dict(t.metadata.labels),
        annotations=dict(t.metadata.annotations),
        image=workload.image,
        environment=dict(workload.environment),
        cpu=workload.resources.cpu,
        memory=workload.resources.memory,
        policy_yaml=t.spec.policy_yaml,
    )


class TemplateRpcs:
    """Sandbox template RPCs; expects ``self.core`` (a GatewayCore)."""

    core: gc.GatewayCore

    @rpc_errors
    async def CreateSandboxTemplate(self, request, context):
        record = await self.core.templates.create(workspace_of(request.workspace_scope), template_from_proto(request.template))
        return openshell_pb2.SandboxTemplateResponse(template=template_to_proto(record))

    @rpc_errors
    async def GetSandboxTemplate(self, request, context):
        record = await self.core.templates.get(request.name, workspace_of(request.workspace_scope))
        return openshell_pb2.SandboxTemplateResponse(template=template_to_proto(record))

    @rpc_errors
    async def ListSandboxTemplates(self, request, context):
        terms = parse_label_selector(request.label_selector)
        workspace = workspace_of(request.workspace_scope, allow_all=True)
        if workspace is not None:
            await self.core.get_workspace(workspace)  # an unknown one is NOT_FOUND, as for sandboxes
        records = await self.core.templates.list(workspace)
        matching = [r for r in records if all(t.matches(r.labels) for t in terms)]
        items, token = paging.page(matching, lambda r: (r.workspace, r.name), page_size=request.page_size, page_token=request.page_token, key_size=2)
        return openshell_pb2.ListSandboxTemplatesResponse(templates=[template_to_proto(r) for r in items], next_page_token=token)

    @rpc_errors
    async def DeleteSandboxTemplate(self, request, context):
        outcome = await self.core.templates.delete(request.name, workspace_of(request.workspace_scope), allow_missing=request.allow_missing)
        return openshell_pb2.DeleteSandboxTemplateResponse(outcome=_OUTCOMES[outcome])
