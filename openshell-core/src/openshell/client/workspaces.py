"""Client calls for workspaces (mixed into ``OpenShellClient``).

    with OpenShellClient.from_config() as client:
        client.create_workspace("team-a", labels={"tier": "dev"})
        client.list_workspaces()                   # [Workspace(name, labels, created_at)]
        client.delete_workspace("team-a")          # "COMPLETED"

A workspace is deleted only when it holds no sandboxes, providers or
templates; ``default`` always exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc

from openshell._proto import datamodel_pb2, openshell_pb2

#: ListWorkspaces pages fetched at most (100 workspaces each)
MAX_PAGES = 1000


@dataclass(frozen=True)
class Workspace:
    """A workspace as the gateway reports it. ``created_at``: unix seconds."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0

    def to_dict(self) -> dict:
        """Plain data for ``-o json|yaml``."""
        return {"name": self.name, "labels": dict(self.labels), "created_at": self.created_at}


def workspace_from_proto(w: datamodel_pb2.Workspace) -> Workspace:
    return Workspace(name=w.metadata.name, labels=dict(w.metadata.labels), created_at=w.metadata.created_time.ToNanoseconds() / 1e9)


class WorkspaceClient:
    """Workspace calls; needs ``_stub``, ``timeout``, ``_error``."""

    def create_workspace(self, name: str, *, labels: Mapping[str, str] | None = None) -> Workspace:
        """Create workspace ``name``. :raises InvalidRequest: bad name or label. :raises OpenShellError: (ALREADY_EXISTS) taken."""
        req = openshell_pb2.CreateWorkspaceRequest(name=name, labels=dict(labels or {}))
        try:
            resp = self._stub.CreateWorkspace(req, timeout=self.timeout)  # type: ignore[attr-defined]
        except grpc.RpcError as exc:
            raise self._error(exc) from None  # type: ignore[attr-defined]
        return workspace_from_proto(resp.workspace)

    def list_workspaces(self, *, label_selector: str = "") -> list[Workspace]:
        """Return every workspace (``default`` among them), by name."""
        out: list[Workspace] = []
        token = ""
        for _ in range(MAX_PAGES):
            req = openshell_pb2.ListWorkspacesRequest(page_token=token, label_selector=label_selector)
            try:
                resp = self._stub.ListWorkspaces(req, timeout=self.timeout)  # type: ignore[attr-defined]
            except grpc.RpcError as exc:
                raise self._error(exc) from None  # type: ignore[attr-defined]
            out += [workspace_from_proto(w) for w in resp.workspaces]
            token = resp.next_page_token
            if not token:
                break
        return out

    def delete_workspace(self, name: str, *, allow_missing: bool = False) -> str:
        """Delete the empty workspace ``name``; returns ``COMPLETED`` or ``ALREADY_ABSENT``.

        :raises OpenShellError: (NOT_FOUND) unknown and not ``allow_missing``;
            (FAILED_PRECONDITION) ``default``, or it still holds something (named).
        """
        req = openshell_pb2.DeleteWorkspaceRequest(name=name, allow_missing=allow_missing)
        try:
            resp = self._stub.DeleteWorkspace(req, timeout=self.timeout)  # type: ignore[attr-defined]
        except grpc.RpcError as exc:
            raise self._error(exc) from None  # type: ignore[attr-defined]
        return {openshell_pb2.DELETION_OUTCOME_ALREADY_ABSENT: "ALREADY_ABSENT"}.get(resp.outcome, "COMPLETED")
