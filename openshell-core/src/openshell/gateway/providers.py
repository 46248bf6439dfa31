"""The gateway's providers and inference routes, independent of gRPC.

``GatewayCore.providers`` is a :class:`ProviderManager`. Credential values are
sealed with :class:`~openshell.gateway.secretbox.SecretBox` before they reach
the store, never logged, and never returned to clients: client-facing views
carry credential *names* only. Supervisors get, for their own sandbox only,
placeholder environment plus the values (``provider_environment``) and the
inference bundle (``inference_bundle``/``watch_inference``).
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from openshell.gateway import names
from openshell.gateway import store as st
from openshell.gateway.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    ProviderInUse,
    ProviderNotFound,
    SandboxNotFound,
    WorkspaceNotFound,
)
from openshell.gateway.labels import check_labels
from openshell.gateway.secretbox import SecretBox
from openshell.gateway.wakeups import Wakeups
from openshell.inference.bundle import RouteBundle
from openshell.plugin.kinds import InferenceBackend
from openshell.plugin.loader import PluginNotFound, get_registry
from openshell.providers import ProviderType, UnknownProviderType, get_provider_type, placeholder

log = logging.getLogger("openshell.gateway")

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_CREDENTIAL_BYTES = 16 * 1024
#: how long Attach/DetachSandboxProvider wait for a running sandbox's supervisor to apply the change
APPLY_TIMEOUT = 15.0


@dataclass(frozen=True)
class ProviderView:
    """A provider as clients see it: credential names, never values."""

    record: st.ProviderRecord

    @property
    def credential_keys(self) -> tuple[str, ...]:
        return self.record.credential_keys


@dataclass(frozen=True)
class SandboxCredential:
    """One credential for a supervisor's proxy (value: supervisor memory only)."""

    provider: str
    type: str
    env_name: str
    value: str = field(repr=False)
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class ProviderEnvironment:
    """What ``GetProviderEnvironment`` returns: placeholders for the sandbox, values for the proxy."""

    environment: dict[str, str]
    credentials: tuple[SandboxCredential, ...]
    #: identifies the attached providers and their versions (see :func:`attachment_revision`)
    revision: int = 0


def attachment_revision(attached: Sequence[tuple[str, int]]) -> int:
    """A non-zero 63-bit number for ``[(provider name, resource_version), …]`` (0 for a missing provider)."""
    digest = hashlib.sha256(json.dumps(["providers", list(attached)]).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1 or 1


def _provider_type(type_name: str) -> type[ProviderType]:
    try:
        return get_provider_type(type_name, get_registry())
    except UnknownProviderType as exc:
        raise InvalidArgument("provider.type", str(exc)) from None


def _backend_class(name: str) -> type[InferenceBackend]:
    try:
        return get_registry().get_class("inference", name)
    except PluginNotFound as exc:
        raise InvalidArgument("route.backend", f"{exc}; see 'openshell inference backends'") from None


def _check_credentials(credentials: Mapping[str, str], ptype: Any) -> None:
    for key, value in credentials.items():
        if not _ENV_NAME_RE.match(key):
            raise InvalidArgument(f"provider.credentials.{key}", "credential names are environment variable names (letters, digits, '_')")
        if not ptype.accepts_env_var(key):
            raise InvalidArgument(
                f"provider.credentials.{key}",
                f"type '{ptype.name}' takes {', '.join(ptype.env_vars)}; use --type generic for other variables",
            )
        if not value:
            raise InvalidArgument(f"provider.credentials.{key}", "the value is empty")
        if len(value.encode()) > MAX_CREDENTIAL_BYTES or any(c in value for c in "\r\n\0"):
            raise InvalidArgument(f"provider.credentials.{key}", f"values are one line of at most {MAX_CREDENTIAL_BYTES} bytes")


def _check_config(config: Mapping[str, str]) -> None:
    for key in config:
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", key):
            raise InvalidArgument(f"provider.config.{key}", "config keys are letters, digits, '_', '.', '-'")


def _check_base_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:  # e.g. 'http://[::1' (an unclosed IPv6 literal)
        raise InvalidArgument("route.base_url", f"{url[:200]!r} is not a valid URL (e.g. http://127.0.0.1:8000/v1)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise InvalidArgument("route.base_url", f"{url!r} is not an http(s) URL without query (e.g. http://127.0.0.1:8000/v1)")


class ProviderManager:
    """Providers and inference routes of one gateway.

    :param state_dir: the gateway's state directory (holds the credential key).
    :param store: the opened store.
    """

    def __init__(self, state_dir: Path, store: st.Store) -> None:
        self.store = store
        self.box = SecretBox(state_dir)
        #: wakes WatchInferenceBundle streams and ``wait_applied`` of one sandbox (``wakeups``)
        self._changed = Wakeups()
        #: sandbox id -> the provider environment revision its supervisor last applied
        self._applied: dict[str, int] = {}

    def notify(self, sandbox_id: str | None = None) -> None:
        """Wake the inference watchers of ``sandbox_id`` (its providers changed, its
        supervisor acknowledged, it was deleted), or of every sandbox (None: a route
        or a provider's credentials changed)."""
        if sandbox_id is None:
            self._changed.wake_all()
        else:
            self._changed.wake(sandbox_id)

    # ------------------------------------------------------------------ providers (clients)

    async def create(
        self,
        *,
        name: str,
        type: str,
        workspace: str,
        credentials: Mapping[str, str],
        config: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> ProviderView:
        """Validate and store a provider (credentials sealed).

        :raises InvalidArgument: bad name, unknown type, bad credential name/value, no credentials.
        :raises AlreadyExists: the name is taken in the workspace.
        """
        if not names.is_valid_name(name):
            raise InvalidArgument("provider.metadata.name", f"{name!r} is not a valid name; use lower-case letters, digits and '-' (at most 63)")
        ptype = _provider_type(type)
        if not credentials:
            raise InvalidArgument("provider.credentials", "give at least one credential (--credential KEY=VALUE or --from-existing)")
        _check_credentials(credentials, ptype)
        _check_config(config or {})
        labels = check_labels(labels or {}, "provider.metadata.labels")
        try:
            record = await asyncio.to_thread(
                self.store.create_provider,
                name=name,
                workspace=workspace,
                type=ptype.name,
                labels=labels,
                config=dict(config or {}),
                credential_keys=list(credentials),
                credentials_enc=self.box.seal(dict(credentials)),
            )
        except st.ProviderNameTaken:
            raise AlreadyExists(f"provider '{name}' already exists; change it with 'openshell provider update {name}'") from None
        except st.UnknownWorkspace:
            raise WorkspaceNotFound(workspace) from None
        log.info("event=provider_created provider=%s type=%s keys=%s", name, ptype.name, ",".join(record.credential_keys))
        return ProviderView(record)

    async def _get(self, name: str, workspace: str) -> st.ProviderRecord:
        record = await asyncio.to_thread(self.store.get_provider, name, workspace)
        if record is None:
            raise ProviderNotFound(name)
        return record

    async def get(self, name: str, workspace: str) -> ProviderView:
        """Return provider ``name``; :raises NotFound:."""
        return ProviderView(await self._get(name, workspace))

    async def list(self, workspace: str | None) -> list[ProviderView]:
        """Return every provider of ``workspace`` (None: all)."""
        return [ProviderView(r) for r in await asyncio.to_thread(self.store.list_providers, workspace)]

    async def update(
        self,
        name: str,
        workspace: str,
        *,
        credentials: Mapping[str, str] | None = None,
        config: Mapping[str, str] | None = None,
        type: str = "",
        remove_credentials: Sequence[str] = (),
        remove_config: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
    ) -> ProviderView:
        """Merge new credentials/config into the provider, remove the named keys; inference watchers are woken.

        Empty maps change nothing (an update naming only the provider keeps everything).

        :param type: empty or the provider's own type.
        :raises NotFound: no such provider.
        :raises InvalidArgument: bad values, no credential left, or ``type`` names another type.
        """
        record = await self._get(name, workspace)
        if type and type != record.type:
            raise InvalidArgument(
                "provider.type",
                f"type cannot be changed (provider '{name}' is '{record.type}'); delete it and create a '{type}' provider instead",
            )
        ptype = _provider_type(record.type)
        _check_credentials(credentials or {}, ptype)
        _check_config(config or {})
        current = self.box.open(record.credentials_enc)
        for key in remove_credentials:
            if key not in current:
                raise InvalidArgument("remove_credentials", f"provider '{name}' has no credential {key}")
            current.pop(key)
        current.update(credentials or {})
        if not current:
            raise InvalidArgument("remove_credentials", "a provider keeps at least one credential; delete the provider instead")
        merged = {k: v for k, v in record.config.items() if k not in set(remove_config)}
        merged.update(config or {})
        updated = await asyncio.to_thread(
            self.store.update_provider,
            name,
            workspace,
            config=merged,
            credential_keys=list(current),
            credentials_enc=self.box.seal(current),
            labels=check_labels(labels, "provider.metadata.labels") if labels else None,
        )
        if updated is None:
            raise ProviderNotFound(name)
        log.info("event=provider_updated provider=%s keys=%s", name, ",".join(updated.credential_keys))
        self.notify()
        return ProviderView(updated)

    async def delete(self, name: str, workspace: str, *, allow_missing: bool = False) -> str:
        """Delete the provider unless a sandbox or the inference route uses it.

        :returns: ``COMPLETED`` or ``ALREADY_ABSENT``.
        :raises NotFound: missing and not ``allow_missing``.
        :raises FailedPrecondition: still used (names the users and the fix).
        """
        record = await asyncio.to_thread(self.store.get_provider, name, workspace)
        if record is None:
            if allow_missing:
                return "ALREADY_ABSENT"
            raise ProviderNotFound(name)
        users = [s.name for s in await asyncio.to_thread(self.store.list_sandboxes, workspace) if name in s.spec.get("providers", [])]
        if users:
            raise ProviderInUse(f"provider '{name}' is used by sandbox(es) {', '.join(users)}; delete them first")
        route = await asyncio.to_thread(self.store.get_inference_route, workspace)
        if route is not None and route.provider == name:
            raise ProviderInUse(f"provider '{name}' authenticates the inference route; change it with 'openshell inference set' first")
        await asyncio.to_thread(self.store.delete_provider, name, workspace)
        log.info("event=provider_deleted provider=%s", name)
        return "COMPLETED"

    async def check_attachable(self, names_: Sequence[str], workspace: str) -> None:
        """Raise ``InvalidArgument`` (field ``spec.providers``) unless every named provider exists."""
        for i, pname in enumerate(names_):
            if await asyncio.to_thread(self.store.get_provider, pname, workspace) is None:
                raise InvalidArgument(f"spec.providers[{i}]", f"provider '{pname}' not found; create it with 'openshell provider create --name {pname} ...'")

    # ------------------------------------------------------------------ inference routes (clients)

    async def set_route(self, workspace: str, *, backend: str, model: str, base_url: str = "", provider: str = "") -> st.InferenceRouteRecord:
        """Validate and store the workspace's inference route; supervisors refresh without restart.

        :raises InvalidArgument: unknown backend (not installed where the gateway runs),
            empty model, bad URL, unknown provider.
        """
        cls = _backend_class(backend)
        if not model.strip():
            raise InvalidArgument("route.model", "give the model id the backend serves (--model)")
        if base_url:
            _check_base_url(base_url)
        elif not cls.default_base_url:
            raise InvalidArgument("route.base_url", f"backend '{backend}' has no default URL; give --base-url")
        if provider:
            await self._get(provider, workspace)
        route = await asyncio.to_thread(
            self.store.set_inference_route,
            workspace,
            backend=backend,
            model=model.strip(),
            base_url=base_url,
            provider=provider,
        )
        log.info("event=inference_route_set workspace=%s backend=%s model=%s provider=%s", workspace, backend, model, provider or "-")
        self.notify()
        return route

    async def get_route(self, workspace: str) -> st.InferenceRouteRecord | None:
        """Return the workspace's route (None when never set)."""
        return await asyncio.to_thread(self.store.get_inference_route, workspace)

    # ------------------------------------------------------------------ supervisors

    async def provider_environment(self, record: st.SandboxRecord) -> ProviderEnvironment:
        """Placeholders and values for the providers attached to ``record``.

        A provider deleted after the sandbox was created is skipped (logged).
        """
        env: dict[str, str] = {}
        creds: list[SandboxCredential] = []
        for pname in record.spec.get("providers", []):
            prov = await asyncio.to_thread(self.store.get_provider, pname, record.workspace)
            if prov is None:
                log.warning("event=provider_missing sandbox=%s provider=%s", record.id, pname)
                continue
            try:
                ptype = _provider_type(prov.type)
            except InvalidArgument:
                ptype = None  # type plugin uninstalled: the value may go nowhere
            for key, value in sorted(self.box.open(prov.credentials_enc).items()):
                env[key] = placeholder(key)
                hosts = ptype.hosts_for(key, prov.config) if ptype is not None else ()
                creds.append(SandboxCredential(pname, prov.type, key, value, tuple(hosts)))
        return ProviderEnvironment(env, tuple(creds), attachment_revision(await self._attached_versions(record)))

    async def inference_bundle(self, workspace: str) -> RouteBundle:
        """The route of ``workspace`` with the backend's auth headers (revision 0: none or unusable)."""
        route = await asyncio.to_thread(self.store.get_inference_route, workspace)
        if route is None:
            return RouteBundle()
        try:
            cls = _backend_class(route.backend)
        except InvalidArgument as exc:
            log.warning("event=inference_backend_missing workspace=%s error=%s", workspace, exc)
            return RouteBundle()
        credential = None
        if route.provider:
            prov = await asyncio.to_thread(self.store.get_provider, route.provider, workspace)
            if prov is not None:
                values = self.box.open(prov.credentials_enc)
                try:
                    preferred = _provider_type(prov.type).env_vars
                except InvalidArgument:
                    preferred = ()
                key = next((k for k in preferred if k in values), None) or sorted(values)[0]
                credential = values[key]
        headers = dict(cls().auth_headers(credential))
        content: dict[str, Any] = {
            "backend": route.backend,
            "protocols": list(cls.protocols),
            "base_url": route.base_url or cls.default_base_url,
            "model": route.model,
            "auth": headers,
        }
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).digest()
        revision = int.from_bytes(digest[:8], "big") >> 1 or 1
        return RouteBundle(revision, route.backend, tuple(cls.protocols), content["base_url"], route.model, headers)

    # ------------------------------------------------------------------ attaching to sandboxes

    async def attached(self, record: st.SandboxRecord) -> Sequence[ProviderView]:
        """The sandbox's providers that exist, in attachment order."""
        views = []
        for pname in record.spec.get("providers", []):
            prov = await asyncio.to_thread(self.store.get_provider, pname, record.workspace)
            if prov is not None:
                views.append(ProviderView(prov))
        return views

    async def set_attachment(
        self, record: st.SandboxRecord, provider: str, *, attach: bool, expected_resource_version: int = 0
    ) -> tuple[st.SandboxRecord, bool]:
        """Attach (or detach) ``provider`` to (from) the sandbox ``record``.

        Only names are stored in the sandbox's spec; the values stay sealed in the
        provider. When the sandbox is READY the call returns once its supervisor
        applied the new environment (at most :data:`APPLY_TIMEOUT` seconds; later
        it still applies it, as soon as it reconnects).

        :returns: ``(the sandbox's record, changed)``; ``changed`` is False when the
            provider was already attached (attach) or was not attached (detach).
        :raises NotFound: no such provider (attach) or the sandbox is gone.
        :raises FailedPrecondition: ``expected_resource_version`` differs from the sandbox's.
        :raises InvalidArgument: empty provider name.
        """
        if not provider:
            raise InvalidArgument("provider", "name the provider to attach or detach")
        if attach:
            await self._get(provider, record.workspace)
        current = list(record.spec.get("providers", []))
        if expected_resource_version and expected_resource_version != record.resource_version:
            raise FailedPrecondition(
                f"sandbox '{record.name}' changed (resource_version {record.resource_version}, expected {expected_resource_version}); read it again"
            )
        if (provider in current) == attach:
            return record, False
        wanted = [*current, provider] if attach else [p for p in current if p != provider]
        try:
            updated = await asyncio.to_thread(
                self.store.set_sandbox_providers, record.id, wanted, expected_resource_version=expected_resource_version or record.resource_version
            )
        except st.ResourceVersionMismatch as exc:
            raise FailedPrecondition(f"sandbox '{record.name}' changed meanwhile (resource_version {exc.current}); try again") from None
        if updated is None:
            raise SandboxNotFound(record.name, record.workspace)
        log.info("event=provider_%s sandbox=%s provider=%s", "attached" if attach else "detached", record.id, provider)
        self.notify(record.id)
        if updated.phase == st.READY:
            outcome = await self.wait_applied(updated.id, APPLY_TIMEOUT)
            if outcome == "gone":
                raise SandboxNotFound(record.name, record.workspace)  # deleted while the call waited
            if outcome == "pending":
                log.warning("event=provider_apply_pending sandbox=%s provider=%s", record.id, provider)
        return updated, True

    async def acknowledge(self, sandbox_id: str, revision: int) -> None:
        """The supervisor of ``sandbox_id`` applied provider environment ``revision``."""
        self._applied[sandbox_id] = revision
        self.notify(sandbox_id)

    def forget(self, sandbox_id: str) -> None:
        """Drop what is known of a deleted sandbox's supervisor."""
        self._applied.pop(sandbox_id, None)

    async def wait_applied(self, sandbox_id: str, timeout: float) -> Literal["applied", "pending", "gone"]:
        """Wait until the sandbox's supervisor acknowledged the provider environment
        the store describes now.

        What it must acknowledge is worked out again on every change: a provider
        rotated, attached or detached meanwhile (by another call) makes an older
        revision not count, and the newer one the supervisor then applies does.

        :param timeout: seconds.
        :returns: ``"applied"``; ``"pending"`` after ``timeout`` (the supervisor
            applies it when it reconnects); ``"gone"`` when the sandbox was deleted.
        """

        async def wait() -> Literal["applied", "gone"]:
            with self._changed.subscribe(sandbox_id) as changed:
                while True:
                    changed.clear()  # before the reads: a change made meanwhile sets it again
                    record = await asyncio.to_thread(self.store.get_sandbox, sandbox_id)
                    if record is None:
                        return "gone"
                    if self._applied.get(sandbox_id) == attachment_revision(await self._attached_versions(record)):
                        return "applied"
                    await changed.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except asyncio.TimeoutError:
            return "pending"

    async def _attached_versions(self, record: st.SandboxRecord) -> builtins.list[tuple[str, int]]:  # list: the method above
        versions = []
        for pname in record.spec.get("providers", []):
            prov = await asyncio.to_thread(self.store.get_provider, pname, record.workspace)
            versions.append((pname, prov.resource_version if prov is not None else 0))
        return versions

    async def watch_inference(self, record: st.SandboxRecord, after_revision: int = 0) -> AsyncIterator[RouteBundle]:
        """Yield the sandbox's inference bundle whenever it or one of the sandbox's
        attached providers changed (the revision covers both, so a supervisor
        re-reads its provider environment when a credential was rotated).

        Ends when the sandbox is deleted. Attaching or detaching a provider changes
        the revision too.
        """
        last = after_revision
        with self._changed.subscribe(record.id) as changed:
            while True:
                changed.clear()  # before the reads: a change made meanwhile sets it again
                # Re-read: providers may have been attached or detached since.
                current = await asyncio.to_thread(self.store.get_sandbox, record.id)
                if current is None:
                    return
                bundle = await self.inference_bundle(record.workspace)
                attached = await self._attached_versions(current)
                if attached:
                    digest = hashlib.sha256(json.dumps([bundle.revision, attached]).encode()).digest()
                    bundle = dataclasses.replace(bundle, revision=int.from_bytes(digest[:8], "big") >> 1 or 1)
                if bundle.revision == last:
                    await changed.wait()
                    continue
                last = bundle.revision
                yield bundle
