"""Client calls for sandbox templates (mixed into ``OpenShellClient``).

    with OpenShellClient.from_config() as client:
        client.create_template("py", env={"LANG": "C.UTF-8"}, memory="1Gi", policy_yaml=text)
        client.list_templates()                    # [SandboxTemplate(...)]
        client.create_sandbox(workload_template="py")
        client.delete_template("py")

A template belongs to the client's workspace. Its image is for container
drivers; the ``local`` driver refuses a sandbox made from a template with one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc

from openshell._proto import datamodel_pb2, openshell_pb2

#: ListSandboxTemplates pages fetched at most (100 templates each)
MAX_PAGES = 1000


@dataclass(frozen=True)
class SandboxTemplate:
    """A stored template. ``resource_version`` is never reused, even after a delete."""

    name: str
    workspace: str = "default"
    image: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)
    cpu: str = ""
    memory: str = ""
    policy_yaml: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    resource_version: int = 0

    def to_dict(self) -> dict:
        """Plain data for ``-o json|yaml``."""
        return {
            "name": self.name,
            "workspace": self.workspace,
            "image": self.image,
            "environment": dict(self.environment),
            "cpu": self.cpu,
            "memory": self.memory,
            "policy_yaml": self.policy_yaml,
            "labels": dict(self.labels),
            "resource_version": self.resource_version,
        }


def template_from_proto(t: openshell_pb2.SandboxWorkloadTemplate) -> SandboxTemplate:
    w = t.spec.workload
    return SandboxTemplate(
        name=t.metadata.name,
        workspace=t.metadata.workspace,
        image=w.image,
        environment=dict(w.environment),
        cpu=w.resources.cpu,
        memory=w.resources.memory,
        policy_yaml=t.spec.policy_yaml,
        labels=dict(t.metadata.labels),
        resource_version=t.metadata.resource_version,
    )


class TemplateClient:
    """Sandbox template calls; needs ``_stub``, ``_scope``, ``timeout``, ``_error``."""

    def create_template(
        self,
        name: str,
        *,
        image: str = "",
        env: Mapping[str, str] | None = None,
        cpu: str = "",
        memory: str = "",
        policy_yaml: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> SandboxTemplate:
        """Store template ``name`` in the client's workspace.

        :raises InvalidRequest: a bad field (named). :raises OpenShellError: (ALREADY_EXISTS) taken.
        """
        t = openshell_pb2.SandboxWorkloadTemplate(
            metadata=datamodel_pb2.ObjectMeta(name=name, labels=dict(labels or {})),
            spec=openshell_pb2.SandboxWorkloadTemplateSpec(
                workload=openshell_pb2.SandboxWorkloadConfig(
                    image=image, environment=dict(env or {}), resources=openshell_pb2.SandboxResources(cpu=cpu, memory=memory)
                ),
                policy_yaml=policy_yaml,
            ),
        )
        req = openshell_pb2.CreateSandboxTemplateRequest(template=t, workspace_scope=self._scope)  # type: ignore[attr-defined]
        try:
            resp = self._stub.CreateSandboxTemplate(req, timeout=self.timeout)  # type: ignore[attr-defined]
        except grpc.RpcError as exc:
            raise self._error(exc) from None  # type: ignore[attr-defined]
        return template_from_proto(resp.template)

    def get_template(self, name: str) -> SandboxTemplate:
        """Return template ``name``. :raises NotFound:."""
        req = openshell_pb2.GetSandboxTemplateRequest(name=name, workspace_scope=self._scope)  # type: ignore[attr-defined]
        try:
            resp = self._stub.GetSandboxTemplate(req, timeout=self.timeout)  # type: ignore[attr-defined]
        except grpc.RpcError as exc:
            raise self._error(exc) from None  # type: ignore[attr-defined]
        return template_from_proto(resp.template)

    def list_templates(self, *, label_selector: str = "") -> list[SandboxTemplate]:
        """Return the templates of the client's workspace, by name."""
        out: list[SandboxTemplate] = []
        token = ""
        for _ in range(MAX_PAGES):
            req = openshell_pb2.ListSandboxTemplatesRequest(workspace_scope=self._scope, page_token=token, label_selector=label_selector)  # type: ignore[attr-defined]
            try:
                resp = self._stub.ListSandboxTemplates(req, timeout=self.timeout)  # type: ignore[attr-defined]
            except grpc.RpcError as exc:
                raise self._error(exc) from None  # type: ignore[attr-defined]
            out += [template_from_proto(t) for t in resp.templates]
            token = resp.next_page_token
            if not token:
                break
        return out

    def delete_template(self, name: str, *, allow_missing: bool = False) -> str:
        """Delete template ``name`` (sandboxes made from it stay); ``COMPLETED`` or ``ALREADY_ABSENT``.

        :raises NotFound: unknown and not ``allow_missing``.
        """
        req = openshell_pb2.DeleteSandboxTemplateRequest(name=name, workspace_scope=self._scope, allow_missing=allow_missing)  # type: ignore[attr-defined]
        try:
            resp = self._stub.DeleteSandboxTemplate(req, timeout=self.timeout)  # type: ignore[attr-defined]
        except grpc.RpcError as exc:
            raise self._error(exc) from None  # type: ignore[attr-defined]
        return {openshell_pb2.DELETION_OUTCOME_ALREADY_ABSENT: "ALREADY_ABSENT"}.get(resp.outcome, "COMPLETED")
