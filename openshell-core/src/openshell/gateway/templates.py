"""Sandbox templates: reusable recipes (image, environment, resources, policy), per workspace.

``CreateSandbox`` with ``workload_template`` starts from one (see
``GatewayCore.create_sandbox``); the sandbox records the template's name and
``resource_version``, which this store never reuses, so a template deleted and
created again under the same name is told apart. Deleting a template leaves
the sandboxes made from it as they are.

The image is for container drivers; the ``local`` driver has none and refuses
a sandbox whose template names one (checked at sandbox creation, not here: the
same template may serve another gateway's driver).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from openshell import resources
from openshell.gateway import names
from openshell.gateway import store as st
from openshell.gateway.errors import AlreadyExists, InvalidArgument, TemplateNotFound, WorkspaceNotFound
from openshell.gateway.labels import check_labels
from openshell.policy import PolicyError, parse_policy

log = logging.getLogger("openshell.gateway")

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: an image reference: registry/name:tag or name@sha256:…, no spaces or control characters
_IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,511}$")
#: bounds on what one template may carry
MAX_ENV_ENTRIES = 256
MAX_ENV_VALUE_BYTES = 32 * 1024


@dataclass(frozen=True)
class TemplateInput:
    """What a client submits for a new template (fields of ``SandboxWorkloadTemplate``).

    :ivar cpu, memory: Kubernetes quantities (``"1.5"``, ``"512Mi"``); empty: unset.
    :ivar policy_yaml: a POLICY.md document; empty: the default policy.
    """

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    image: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)
    cpu: str = ""
    memory: str = ""
    policy_yaml: str = ""


def check_image(image: str, field_name: str) -> str:
    """Return ``image`` when it is a plausible image reference. :raises InvalidArgument:."""
    if image and not _IMAGE_RE.match(image):
        raise InvalidArgument(field_name, f"{image[:80]!r} is not an image reference (e.g. 'python:3.12' or 'registry.test/team/img@sha256:…')")
    return image


def _check(t: TemplateInput) -> dict:
    """Validate ``t``; return its stored spec. :raises InvalidArgument: naming the field."""
    if not names.is_valid_name(t.name):
        raise InvalidArgument("template.metadata.name", f"{t.name!r} is not a valid template name; use lower-case letters, digits and '-' (at most 63)")
    check_labels(t.labels, "template.metadata.labels")
    check_image(t.image, "template.spec.workload.image")
    if len(t.environment) > MAX_ENV_ENTRIES:
        raise InvalidArgument("template.spec.workload.environment", f"at most {MAX_ENV_ENTRIES} variables")
    for key, value in t.environment.items():
        if not _ENV_NAME_RE.match(key):
            raise InvalidArgument(
                f"template.spec.workload.environment.{key}", "environment variable names are letters, digits and '_', not starting with a digit"
            )
        if len(value.encode()) > MAX_ENV_VALUE_BYTES or "\0" in value:
            raise InvalidArgument(f"template.spec.workload.environment.{key}", f"values are at most {MAX_ENV_VALUE_BYTES} bytes without NUL")
    limits = {k: v for k, v in (("cpu", t.cpu), ("memory", t.memory)) if v}
    try:
        stored_resources = resources.validate({"limits": limits} if limits else None)
    except resources.QuantityError as exc:
        key = "cpu" if ".cpu" in str(exc) else "memory"
        raise InvalidArgument(f"template.spec.workload.resources.{key}", str(exc)) from None
    if t.policy_yaml.strip():
        try:
            parse_policy(t.policy_yaml)
        except PolicyError as exc:
            where = f"template.spec.policy_yaml.{exc.field}" if exc.field else "template.spec.policy_yaml"
            raise InvalidArgument(where, f"invalid policy: {exc.message}") from None
    return {
        "image": t.image,
        "environment": dict(t.environment),
        "resources": stored_resources,
        "policy_yaml": t.policy_yaml if t.policy_yaml.strip() else "",
    }


class TemplateManager:
    """Sandbox templates over a :class:`~openshell.gateway.store.Store`."""

    def __init__(self, store: st.Store) -> None:
        self.store = store

    async def create(self, workspace: str, template: TemplateInput) -> st.TemplateRecord:
        """Validate and store ``template`` in ``workspace``.

        :raises InvalidArgument: a bad field (named ``template.…``).
        :raises AlreadyExists: the name is taken in the workspace.
        :raises WorkspaceNotFound: unknown workspace.
        """
        spec = await asyncio.to_thread(_check, template)
        try:
            record = await asyncio.to_thread(
                self.store.create_template,
                name=template.name,
                workspace=workspace,
                labels=dict(template.labels),
                annotations=dict(template.annotations),
                spec=spec,
            )
        except st.TemplateNameTaken:
            raise AlreadyExists(f"sandbox template '{template.name}' already exists in workspace '{workspace}'") from None
        except st.UnknownWorkspace:
            raise WorkspaceNotFound(workspace) from None
        log.info("event=template_created workspace=%s template=%s version=%d", workspace, record.name, record.resource_version)
        return record

    async def get(self, name: str, workspace: str) -> st.TemplateRecord:
        """Return template ``name`` of ``workspace``.

        :raises TemplateNotFound: no such template. :raises WorkspaceNotFound: unknown workspace.
        """
        record = await asyncio.to_thread(self.store.get_template, name, workspace)
        if record is None:
            await self._require_workspace(workspace)
            raise TemplateNotFound(name, workspace)
        return record

    async def list(self, workspace: str | None) -> list[st.TemplateRecord]:
        """Return the templates of ``workspace`` (None: every workspace), ordered by (workspace, name).

        :raises WorkspaceNotFound: unknown workspace.
        """
        if workspace is not None:
            await self._require_workspace(workspace)
        return await asyncio.to_thread(self.store.list_templates, workspace)

    async def delete(self, name: str, workspace: str, *, allow_missing: bool = False) -> str:
        """Delete the template; return ``COMPLETED`` (or ``ALREADY_ABSENT`` with ``allow_missing``).

        :raises TemplateNotFound: no such template without ``allow_missing``.
        :raises WorkspaceNotFound: unknown workspace.
        """
        await self._require_workspace(workspace)
        if await asyncio.to_thread(self.store.delete_template, name, workspace):
            log.info("event=template_deleted workspace=%s template=%s", workspace, name)
            return "COMPLETED"
        if allow_missing:
            return "ALREADY_ABSENT"
        raise TemplateNotFound(name, workspace)

    async def _require_workspace(self, workspace: str) -> None:
        if await asyncio.to_thread(self.store.get_workspace, workspace) is None:
            raise WorkspaceNotFound(workspace)
