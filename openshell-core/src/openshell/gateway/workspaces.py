"""Creating and deleting workspaces (getting and listing them is in ``core``).

A workspace holds sandboxes, providers (with the inference route) and sandbox
templates; each of those names is unique within its workspace only. ``default``
always exists and cannot be deleted; a workspace that still holds anything
cannot be deleted either (its contents are named in the error).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from openshell.gateway import names
from openshell.gateway import store as st
from openshell.gateway.errors import AlreadyExists, FailedPrecondition, InvalidArgument, WorkspaceNotEmpty, WorkspaceNotFound
from openshell.gateway.labels import check_labels

log = logging.getLogger("openshell.gateway")

#: names listed per kind in a "not empty" error
_SHOWN = 5


class WorkspaceManager:
    """Workspace creation and deletion over a :class:`~openshell.gateway.store.Store`."""

    def __init__(self, store: st.Store) -> None:
        self.store = store

    async def create(self, name: str, labels: Mapping[str, str] | None = None) -> st.WorkspaceRecord:
        """Create workspace ``name`` with ``labels``.

        :raises InvalidArgument: bad name (lower-case letters, digits, '-'; at most 63) or label.
        :raises AlreadyExists: it exists.
        """
        if not names.is_valid_name(name):
            raise InvalidArgument("name", f"{name!r} is not a valid workspace name; use lower-case letters, digits and '-' (at most 63)")
        checked = check_labels(labels or {})
        try:
            record = await asyncio.to_thread(self.store.create_workspace, name, checked)
        except st.WorkspaceNameTaken:
            raise AlreadyExists(f"workspace '{name}' already exists") from None
        log.info("event=workspace_created workspace=%s", name)
        return record

    async def delete(self, name: str, *, allow_missing: bool = False) -> str:
        """Delete the empty workspace ``name``; return ``COMPLETED`` (or ``ALREADY_ABSENT``).

        :raises FailedPrecondition: it is ``default``.
        :raises WorkspaceNotEmpty: it holds sandboxes, providers or templates (named).
        :raises WorkspaceNotFound: it does not exist and not ``allow_missing``.
        """
        if name == st.DEFAULT_WORKSPACE:
            raise FailedPrecondition("workspace 'default' cannot be deleted")
        try:
            existed = await asyncio.to_thread(self.store.delete_workspace, name)
        except st.WorkspaceNotEmpty as exc:
            parts = []
            for kind, found in exc.contents.items():
                shown = ", ".join(found[:_SHOWN]) + (f", … ({len(found) - _SHOWN} more)" if len(found) > _SHOWN else "")
                parts.append(f"{kind} {shown}")
            raise WorkspaceNotEmpty(f"workspace '{name}' is not empty ({'; '.join(parts)}); delete them first") from None
        if existed:
            log.info("event=workspace_deleted workspace=%s", name)
            return "COMPLETED"
        if allow_missing:
            return "ALREADY_ABSENT"
        raise WorkspaceNotFound(name)
