"""The gateway's logic, independent of gRPC: sandboxes, policies, supervisors.

``service.py`` and ``supervisor_service.py`` translate protos to calls of
:class:`GatewayCore` and its exceptions to gRPC status codes; everything that
decides something lives here, so it can be tested without a server.

Every public method is a coroutine meant for the gateway's event loop. Store
and driver calls (SQLite, process management) run in worker threads.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hmac
import ipaddress
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from openshell import resources
from openshell.gateway import names, sandbox_exec
from openshell.gateway import store as st
from openshell.gateway.errors import (  # noqa: F401 - re-exported: callers catch them as ``core.X``
    AlreadyExists,
    DriverFailed,
    FailedPrecondition,
    GatewayError,
    InvalidArgument,
    NotFound,
    PolicyRevisionNotFound,
    ProviderInUse,
    ProviderNotFound,
    ResourceExhausted,
    SandboxNotFound,
    SandboxNotReady,
    SandboxUnreachable,
    Unauthenticated,
    Unavailable,
    WorkspaceNotFound,
)
from openshell.gateway.labels import check_labels, parse_label_selector  # noqa: F401 - parse_label_selector re-exported
from openshell.gateway.policies import PolicyState, PolicyUpdateError, prepare_update
from openshell.gateway.providers import ProviderManager
from openshell.gateway.ssh_sessions import SshSessions
from openshell.gateway.stop_start import StopStartMixin
from openshell.gateway.store import PolicyRevision, SandboxRecord, Store
from openshell.gateway.templates import TemplateManager
from openshell.gateway.wakeups import Wakeups
from openshell.gateway.watch import LogRow, PlatformEvent, WatchHub, event_from_log
from openshell.gateway.workspaces import WorkspaceManager
from openshell.plugin.events import SandboxEvent
from openshell.plugin.kinds import ComputeDriver, SandboxStatus
from openshell.plugin.loader import get_registry
from openshell.policy import PolicyError, parse_policy

log = logging.getLogger("openshell.gateway")

DEFAULT_POLICY_YAML = "version: 1\n"
"""Stored for a sandbox created without a policy; parses to the default policy (POLICY.md §1)."""

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
TIMEOUT_EXIT_CODE = 124  # what `timeout(1)` returns; the CLI contract uses it too
EXEC_TIMEOUT_GRACE = 5.0  # seconds the exec backend gets to report 124 itself
LAUNCH_GRACE = 120.0  # seconds a driver create/start may run before the monitor judges the sandbox anyway

#: a sandbox's pushed log file rotates (one backup) past this many bytes
MAX_LOG_BYTES = 8 * 1024 * 1024
PUBLISH_CHUNK = 100  # pushed log lines offered to watchers between two turns of the event loop
_LOG_LEVELS = {"debug": 0, "info": 1, "warning": 2, "warn": 2, "error": 3, "critical": 4}


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class SandboxSpec:
    """What a client asks for beyond name and labels.

    :ivar command: the entrypoint argv; empty: an idle keep-alive.
    :ivar environment: variables for every process in the sandbox.
    :ivar extra_hosts: ``"name:ip"`` entries for the sandbox's ``/etc/hosts``.
    :ivar policy_yaml: a POLICY.md document; empty: the default policy.
    :ivar log_level: the supervisor's log level (empty: its default).
    :ivar resources: ``{"limits": {"cpu": "1.5", "memory": "512Mi", ...}}``
        (``openshell.resources``); empty: the defaults.
    :ivar image: for container drivers (``ComputeDriver.supports_images``); empty: none.
    :ivar workload_template: ``(name, resource_version)`` of the template the
        sandbox was made from (set by the gateway, never by a client).
    """

    command: tuple[str, ...] = ()
    environment: Mapping[str, str] | None = None
    extra_hosts: tuple[str, ...] = ()
    policy_yaml: str = ""
    log_level: str = ""
    providers: tuple[str, ...] = ()
    resources: Mapping[str, Any] | None = None
    image: str = ""
    workload_template: tuple[str, int] | None = None

    def stored(self) -> dict[str, Any]:
        """The spec as stored in ``SandboxRecord.spec`` (no policy: that is a revision).

        ``image`` and ``workload_template`` (``{"name", "resource_version"}``) only when set.
        """
        out: dict[str, Any] = {
            "command": list(self.command),
            "environment": dict(self.environment or {}),
            "extra_hosts": list(self.extra_hosts),
            "log_level": self.log_level,
            "providers": list(self.providers),
            "resources": resources.validate(self.resources),
        }
        if self.image:
            out["image"] = self.image
        if self.workload_template:
            out["workload_template"] = {"name": self.workload_template[0], "resource_version": self.workload_template[1]}
        return out

    def from_template(self, template: st.TemplateRecord) -> SandboxSpec:
        """This spec on top of ``template``: its environment entries, resource limits
        and policy win; the template gives the image and whatever this spec leaves unset."""
        t = template.spec
        return dataclasses.replace(
            self,
            environment={**t.get("environment", {}), **(self.environment or {})},
            resources=_merge_limits(t.get("resources") or {}, self.resources),
            policy_yaml=self.policy_yaml if self.policy_yaml.strip() else t.get("policy_yaml", ""),
            image=self.image or t.get("image", ""),
            workload_template=(template.name, template.resource_version),
        )


def _merge_limits(base: Mapping[str, Any], own: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``own`` limits over ``base`` limits, key by key; ``own`` as it is when it is not a plain
    ``{"limits": {...}}`` mapping (validation then names what is wrong with it)."""
    if not own:
        return base or None
    limits = (own.get("limits") or {}) if isinstance(own, Mapping) else None
    if not isinstance(limits, Mapping) or set(own) - {"limits", "requests"}:
        return own
    return {**own, "limits": {**base.get("limits", {}), **limits}}


@dataclass(frozen=True)
class SandboxInfo:
    """A sandbox as clients see it.

    :ivar record: the stored record (``record.secret`` must not leave the gateway).
    :ivar policy_revision: the newest stored policy revision number.
    :ivar loaded_policy_revision: the newest revision a supervisor reported loaded (0: none).
    """

    record: SandboxRecord
    policy_revision: int
    loaded_policy_revision: int


@dataclass(frozen=True)
class SupervisorConfig:
    """What ``GetSandboxConfig`` returns to a supervisor."""

    sandbox_id: str
    name: str
    workspace: str
    labels: dict[str, str]
    command: list[str]
    environment: dict[str, str]
    extra_hosts: list[str]
    log_level: str
    netns_index: int
    policy: PolicyRevision


@dataclass(frozen=True)
class LogLine:
    """One log record pushed by a supervisor."""

    time: float
    level: str
    target: str
    message: str
    fields: Mapping[str, str]


@dataclass(frozen=True)
class ExecEvent:
    """One event of an exec stream (same shape as ``openshell.gateway.sandbox_exec.ExecEvent``).

    :ivar kind: ``stdout``, ``stderr`` or ``exit`` (exactly one ``exit``, last).
    """

    kind: str
    data: bytes = b""
    exit_code: int | None = None


# --------------------------------------------------------------------------- validation

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _check_spec(spec: SandboxSpec) -> None:
    for key in spec.environment or {}:
        if not _ENV_NAME_RE.match(key):
            raise InvalidArgument(f"spec.environment.{key}", "environment variable names are letters, digits and '_', not starting with a digit")
    for i, entry in enumerate(spec.extra_hosts):
        host, sep, ip = entry.rpartition(":") if entry.count(":") == 1 else entry.partition(":")
        try:
            ipaddress.ip_address(ip)
            ok = bool(sep) and bool(_HOST_RE.match(host))
        except ValueError:
            ok = False
        if not ok:
            raise InvalidArgument(f"spec.extra_hosts[{i}]", f"{entry!r} is not 'name:ip' (e.g. 'api.test:10.199.0.2')")
    if any(not isinstance(a, str) for a in spec.command):
        raise InvalidArgument("spec.command", "every argument must be a string")
    try:
        resources.validate(spec.resources)
    except resources.QuantityError as exc:
        raise InvalidArgument("spec.template.resources", str(exc)) from exc


def _parse_policy(yaml_text: str, field: str) -> None:
    """Validate ``yaml_text`` with the policy module; raise InvalidArgument naming the field."""
    try:
        parse_policy(yaml_text)
    except PolicyError as exc:
        raise InvalidArgument(f"{field}.{exc.field}" if exc.field else field, f"invalid policy: {exc.message}") from exc


def _encode_token(record: SandboxRecord) -> str:
    raw = json.dumps([record.workspace, record.name], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        workspace, name = json.loads(raw)
        if not isinstance(workspace, str) or not isinstance(name, str):
            raise TypeError
        return workspace, name
    except (ValueError, TypeError, binascii.Error):
        raise InvalidArgument("page_token", "not a token this gateway issued; start without one") from None


# --------------------------------------------------------------------------- hooks


def _fire_hook(name: str, **kwargs: Any) -> None:
    """Call event hook ``name`` on every plugin; failures are logged, never raised.

    Event hook results are ignored by contract.
    """
    try:
        getattr(get_registry().hook, name)(**kwargs)
    except Exception as exc:  # noqa: BLE001 - a plugin's bug must not fail a sandbox operation
        log.warning("event=hook_failed hook=%s error=%s", name, exc)


# --------------------------------------------------------------------------- core


class GatewayCore(StopStartMixin):
    """Sandboxes, their policies and their supervisors, for one gateway.

    :param state_dir: the gateway's state directory (logs pushed by supervisors
        go to ``state_dir/sandbox-logs/<id>.jsonl``).
    :param store: the opened :class:`~openshell.gateway.store.Store`.
    :param driver: the compute driver instance.
    :param version: reported by Health.
    :param monitor_interval: seconds between liveness checks of running sandboxes
        (the task runs between :meth:`start` and :meth:`stop`).
    """

    def __init__(
        self,
        state_dir: Path,
        store: Store,
        driver: ComputeDriver,
        *,
        version: str | None = None,
        monitor_interval: float = 2.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.store = store
        self.driver = driver
        self.version = version or _package_version()
        self.monitor_interval = monitor_interval
        # Sandboxes whose driver create/start call has not returned (id -> monotonic
        # start): the driver has no supervisor to report on yet, and its "never
        # started" must not make them ERROR. An entry a cancelled create left behind
        # stops counting after LAUNCH_GRACE.
        self._driver_launching: dict[str, float] = {}
        #: creates and starts begun per sandbox: a monitor tick drops answers older than a launch
        self._launches: dict[str, int] = {}
        #: wakes the WatchPolicy streams of one sandbox: a new revision, or it was deleted (``wakeups``)
        self._policy_watchers = Wakeups()
        self._tasks: list[asyncio.Task[None]] = []
        #: providers and inference routes
        self.providers = ProviderManager(self.state_dir, store)
        #: sandbox templates; workspace creation and deletion
        self.templates = TemplateManager(store)
        self.workspaces = WorkspaceManager(store)
        #: tokens for ``/connect/ssh``; in memory, a restart revokes them
        self.ssh_sessions = SshSessions()
        #: ``https://host:port`` clients dial; set by the gateway process (CreateSshSession reports it)
        self.gateway_endpoint = ""
        #: status changes, log lines and platform events for WatchSandbox
        self.watch = WatchHub()

    @property
    def driver_name(self) -> str:
        """The compute driver's name (``local``, ``docker``; its class name when it has none)."""
        return str(getattr(self.driver, "name", "") or type(self.driver).__name__)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Reconcile stored sandboxes with the driver, then start the liveness monitor.

        From here on the driver's ``report_event`` reaches watchers (from any thread).
        """
        loop = asyncio.get_running_loop()

        def driver_event(sandbox_id: str, type_: str, reason: str, message: str, metadata: Mapping[str, str]) -> None:
            event = PlatformEvent(time.time(), "driver", type_, reason, message, dict(metadata))
            with contextlib.suppress(RuntimeError):  # the loop has closed: the gateway is stopping
                loop.call_soon_threadsafe(self.watch.publish, sandbox_id, event)

        self.driver.event_sink = driver_event
        await self.reconcile()
        if self.monitor_interval > 0:
            self._tasks.append(asyncio.ensure_future(self._monitor()))

    async def stop(self) -> None:
        """Stop background tasks (sandboxes keep running; a restart reconciles them)."""
        self.driver.event_sink = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def health(self) -> str:
        """Return the gateway version (the gateway is healthy when it can answer)."""
        return self.version

    # ------------------------------------------------------------------ helpers

    async def _require_workspace(self, workspace: str) -> str:
        workspace = workspace or st.DEFAULT_WORKSPACE
        if await asyncio.to_thread(self.store.get_workspace, workspace) is None:
            raise WorkspaceNotFound(workspace)
        return workspace

    async def _info(self, record: SandboxRecord) -> SandboxInfo:
        def read() -> SandboxInfo:
            latest = self.store.get_policy_revision(record.id)
            return SandboxInfo(record, latest.revision if latest else 0, self.store.loaded_policy_revision(record.id))

        return await asyncio.to_thread(read)

    async def _update(self, sandbox_id: str, **changes: Any) -> SandboxRecord | None:
        """``store.update_sandbox`` (``phase``, ``reason``, ``supervisor_pid``); watchers see the new record."""
        updated = await asyncio.to_thread(self.store.update_sandbox, sandbox_id, **changes)
        if updated is not None:
            self.watch.publish(sandbox_id, updated)
        return updated

    def _event(self, sandbox_id: str, source: str, type_: str, reason: str, message: str, **metadata: str) -> None:
        """Publish a platform event of the sandbox (``type_``: ``Normal`` or ``Warning``)."""
        self.watch.publish(sandbox_id, PlatformEvent(time.time(), source, type_, reason, message, metadata))

    async def sandbox_info(self, record: SandboxRecord) -> SandboxInfo:
        """The :class:`SandboxInfo` of ``record`` (its policy revisions read now)."""
        return await self._info(record)

    async def _record(self, name: str, workspace: str) -> SandboxRecord:
        workspace = await self._require_workspace(workspace)
        record = await asyncio.to_thread(self.store.get_sandbox_by_name, name, workspace)
        if record is None:
            raise SandboxNotFound(name, workspace)
        return record

    async def sandbox_record(self, name: str, workspace: str = st.DEFAULT_WORKSPACE) -> SandboxRecord:
        """The stored record of sandbox ``name``; :raises NotFound: (sandbox or workspace)."""
        return await self._record(name, workspace)

    # ------------------------------------------------------------------ sandboxes (clients)

    async def create_sandbox(
        self,
        *,
        name: str = "",
        workspace: str = st.DEFAULT_WORKSPACE,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        spec: SandboxSpec | None = None,
        workload_template: str = "",
    ) -> SandboxInfo:
        """Store a sandbox (policy revision 1) and ask the driver to start its supervisor.

        The result is PROVISIONING; the supervisor reports READY itself. When the
        driver fails to start it, the sandbox is kept in ERROR with the reason.

        :param workload_template: a template of ``workspace`` to start from
            (:meth:`SandboxSpec.from_template`).

        :raises InvalidArgument: bad name, label, spec field or policy (the field is named).
        :raises AlreadyExists: the name is taken in the workspace.
        :raises WorkspaceNotFound: unknown workspace.
        :raises TemplateNotFound: unknown ``workload_template``.
        :raises FailedPrecondition: an image on a driver without images.
        :raises ResourceExhausted: no free network index.
        """
        spec = spec or SandboxSpec()
        workspace = await self._require_workspace(workspace)
        if workload_template:
            spec = spec.from_template(await self.templates.get(workload_template, workspace))
        if spec.image and not getattr(self.driver, "supports_images", False):
            source = f" of sandbox template '{spec.workload_template[0]}'" if spec.workload_template else ""
            raise FailedPrecondition(
                f"image '{spec.image}'{source}: compute driver '{getattr(self.driver, 'name', '?')}' has no images (it runs sandboxes"
                " on the host); create the sandbox without an image, or on a gateway whose driver runs images"
            )
        if name and not names.is_valid_name(name):
            raise InvalidArgument("name", f"{name!r} is not a valid sandbox name; use lower-case letters, digits and '-' (at most 63)")
        labels = check_labels(labels or {})
        annotations = dict(annotations or {})
        _check_spec(spec)
        await self.providers.check_attachable(spec.providers, workspace)
        policy_yaml = spec.policy_yaml if spec.policy_yaml.strip() else DEFAULT_POLICY_YAML
        await asyncio.to_thread(_parse_policy, policy_yaml, "spec.policy_yaml")

        def insert() -> tuple[SandboxRecord, PolicyRevision]:
            chosen = name or names.generate_name(self.store.sandbox_names())
            inserted = self.store.create_sandbox(
                name=chosen,
                workspace=workspace,
                labels=labels,
                annotations=annotations,
                spec=spec.stored(),
                policy_yaml=policy_yaml,
                driver=self.driver_name,
            )
            self._begin_launch(inserted[0].id)  # in this thread, right after the insert
            return inserted

        try:
            record, revision = await asyncio.to_thread(insert)
        except st.NameTaken as exc:
            raise AlreadyExists(f"sandbox '{exc.name}' already exists; choose another name or delete it with 'openshell sandbox delete {exc.name}'") from exc
        except st.NoNetnsIndex as exc:
            raise ResourceExhausted(str(exc)) from exc
        except names.NamesExhausted as exc:
            raise ResourceExhausted(str(exc)) from exc
        log.info("event=sandbox_created sandbox=%s name=%s netns_index=%d", record.id, record.name, record.netns_index)
        try:
            await asyncio.to_thread(self.driver.create, record.driver_view(revision.yaml))
        except Exception as exc:  # noqa: BLE001 - any driver failure: keep the sandbox in ERROR
            log.warning("event=driver_create_failed sandbox=%s error=%s", record.id, exc)
            updated = await self._update(record.id, phase=st.ERROR, reason=f"compute driver could not start the sandbox: {exc}")
            self._event(record.id, "driver", "Warning", "Failed", f"compute driver could not start the sandbox: {exc}")
            record = updated or record
        finally:
            self._driver_launching.pop(record.id, None)
        await asyncio.to_thread(_fire_hook, "sandbox_created", sandbox=SandboxEvent.from_record(record))
        return await self._info(record)

    async def get_sandbox(self, name: str, workspace: str = st.DEFAULT_WORKSPACE) -> SandboxInfo:
        """Return the sandbox called ``name``.

        :raises SandboxNotFound: no such sandbox. :raises WorkspaceNotFound: unknown workspace.
        """
        return await self._info(await self._record(name, workspace))

    async def list_sandboxes(
        self,
        workspace: str | None = st.DEFAULT_WORKSPACE,
        *,
        label_selector: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[SandboxInfo], str]:
        """Return one page of sandboxes matching ``label_selector``, ordered by (workspace, name).

        :param workspace: a workspace name, or None for every workspace.
        :param page_size: <= 0 means :data:`DEFAULT_PAGE_SIZE`; capped at :data:`MAX_PAGE_SIZE`.
        :param page_token: "" for the first page, else a previous ``next_page_token``.
        :returns: ``(items, next_page_token)``; the token is "" on the last page.
            Tokens name the last item returned, so they never repeat and survive
            deletions between pages.
        :raises InvalidArgument: bad selector or token.
        """
        if workspace is not None:
            workspace = await self._require_workspace(workspace)
        terms = parse_label_selector(label_selector)
        after = _decode_token(page_token) if page_token else None
        size = DEFAULT_PAGE_SIZE if page_size <= 0 else min(page_size, MAX_PAGE_SIZE)
        records = await asyncio.to_thread(self.store.list_sandboxes, workspace)
        matching = [r for r in records if all(t.matches(r.labels) for t in terms) and (after is None or (r.workspace, r.name) > after)]
        page = matching[:size]
        token = _encode_token(page[-1]) if len(matching) > size else ""
        return [await self._info(r) for r in page], token

    async def delete_sandbox(
        self,
        name: str,
        workspace: str = st.DEFAULT_WORKSPACE,
        *,
        allow_missing: bool = False,
        keep_workdir: bool = False,
    ) -> tuple[str, str]:
        """Stop the sandbox's supervisor and remove its record; afterwards it is NOT_FOUND.

        :param keep_workdir: ask the driver to keep the sandbox's workdir on the host.

        :returns: ``(outcome, sandbox_id)``: ``("COMPLETED", id)``, or
            ``("ALREADY_ABSENT", "")`` when it did not exist and ``allow_missing``.
        :raises SandboxNotFound: it did not exist and not ``allow_missing``.
        :raises DriverFailed: the driver could not stop it (kept in ERROR with the reason).
        """
        workspace = await self._require_workspace(workspace)
        record = await asyncio.to_thread(self.store.get_sandbox_by_name, name, workspace)
        if record is None:
            if allow_missing:
                return "ALREADY_ABSENT", ""
            raise SandboxNotFound(name, workspace)
        await self._update(record.id, phase=st.DELETING)
        await self._remove(record, keep_workdir=keep_workdir)
        return "COMPLETED", record.id

    async def _remove(self, record: SandboxRecord, *, keep_workdir: bool = False) -> None:
        try:
            await asyncio.to_thread(self.driver.delete, record.id, keep_workdir)
        except Exception as exc:
            reason = f"compute driver could not delete the sandbox: {exc}"
            await self._update(record.id, phase=st.ERROR, reason=reason)
            raise DriverFailed(f"sandbox '{record.name}': {reason}; retry 'openshell sandbox delete {record.name}'") from exc
        await asyncio.to_thread(self.store.delete_sandbox, record.id)
        self._launches.pop(record.id, None)
        self.ssh_sessions.revoke_sandbox(record.id)
        with contextlib.suppress(OSError):
            self._log_path(record.id).unlink()
            self._log_path(record.id).with_suffix(".jsonl.1").unlink(missing_ok=True)
        log.info("event=sandbox_deleted sandbox=%s name=%s", record.id, record.name)
        self.watch.close(record.id)  # ends WatchSandbox streams of this sandbox
        self._policy_watchers.wake(record.id)  # ends WatchPolicy streams of this sandbox
        self.providers.forget(record.id)
        self.providers.notify(record.id)  # ends WatchInferenceBundle streams of this sandbox
        await asyncio.to_thread(_fire_hook, "sandbox_deleted", sandbox=SandboxEvent.from_record(record))

    async def set_policy(self, name: str, policy_yaml: str, workspace: str = st.DEFAULT_WORKSPACE) -> PolicyRevision:
        """Validate ``policy_yaml`` as a live update and store it as the sandbox's next revision.

        POLICY.md §6: validated in full first; static sections omitted keep the
        current ones, changed ones are refused before anything is stored. The
        stored document is complete (see :mod:`openshell.gateway.policies`).
        Supervisors watching the sandbox get the new revision at once.

        :returns: the stored revision (status ``pending``).
        :raises InvalidArgument: (field ``policy_yaml.<path>``) invalid, or a static
            section changed (the message says to recreate the sandbox).
        :raises SandboxNotFound: no such sandbox.
        """
        record = await self._record(name, workspace)
        current = await asyncio.to_thread(self.store.get_policy_revision, record.id)
        if current is None:  # pragma: no cover - create stores revision 1 atomically
            raise SandboxNotFound(name, workspace)
        try:
            document = await asyncio.to_thread(prepare_update, current.yaml, policy_yaml)
        except PolicyUpdateError as exc:
            raise InvalidArgument(f"policy_yaml.{exc.field}" if exc.field else "policy_yaml", exc.message) from None
        try:
            revision = await asyncio.to_thread(self.store.add_policy_revision, record.id, document)
        except LookupError:
            raise SandboxNotFound(name, workspace) from None
        log.info("event=policy_stored sandbox=%s revision=%d", record.id, revision.revision)
        self._policy_watchers.wake(record.id)
        return revision

    async def policy_revisions(self, name: str, workspace: str = st.DEFAULT_WORKSPACE) -> list[PolicyRevision]:
        """Return every policy revision of the sandbox, oldest first."""
        record = await self._record(name, workspace)
        return await asyncio.to_thread(self.store.list_policy_revisions, record.id)

    async def policy_state(self, name: str, workspace: str = st.DEFAULT_WORKSPACE) -> PolicyState:
        """Return the sandbox's revisions and the active one (:class:`openshell.gateway.policies.PolicyState`).

        :raises SandboxNotFound: no such sandbox.
        """
        return PolicyState.of(await self.policy_revisions(name, workspace))

    async def exec_sandbox(
        self,
        name: str,
        argv: Sequence[str],
        *,
        workspace: str = st.DEFAULT_WORKSPACE,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        stdin: bytes | AsyncIterator[bytes | tuple[int, int]] | None = None,
        timeout: float | None = None,
        tty: bool = False,
        cols: int = 0,
        rows: int = 0,
    ) -> AsyncIterator[ExecEvent]:
        """Run ``argv`` in the READY sandbox ``name``; yield stdout/stderr events, then exactly one exit.

        Checks happen before the first event, so callers can map errors to a
        status code. When ``timeout`` (seconds) passes, the stream ends with exit
        code 124 even if the backend does not report it.

        :param stdin: bytes, or an async iterator of stdin chunks and
            ``(cols, rows)`` window resizes (ExecSandboxInteractive); its end
            closes the command's stdin. The stream ends when the command ends,
            even if stdin never does.
        :param tty: run under a PTY of ``cols`` x ``rows`` (0: 80x24); output
            then arrives as stdout only.

        :raises InvalidArgument: empty argv or bad environment names.
        :raises SandboxNotFound: no such sandbox.
        :raises FailedPrecondition: the sandbox is not READY.
        :raises Unavailable: the sandbox's SSH endpoint cannot be reached.
        """
        if not argv:
            raise InvalidArgument("command", "must not be empty")
        for key in env or {}:
            if not _ENV_NAME_RE.match(key):
                raise InvalidArgument(f"environment.{key}", "environment variable names are letters, digits and '_'")
        if timeout is not None and timeout <= 0:
            timeout = None
        record = await self._record(name, workspace)
        if record.phase != st.READY:
            why = f" ({record.reason})" if record.reason else ""
            raise SandboxNotReady(f"sandbox '{name}' is {record.phase}{why}, not READY; see 'openshell sandbox get {name}'")
        endpoint = await asyncio.to_thread(self.driver.ssh_endpoint, record.id)
        tty_args: dict[str, Any] = {"tty": True, "cols": cols or 80, "rows": rows or 24} if tty else {}
        stream = sandbox_exec.exec_in_sandbox(
            endpoint,
            bytes.fromhex(record.secret),
            list(argv),
            env=dict(env or {}) or None,
            workdir=workdir or None,
            stdin=stdin,
            timeout=timeout,
            **tty_args,
        )
        deadline = None if timeout is None else time.monotonic() + timeout + EXEC_TIMEOUT_GRACE
        first = True
        try:
            while True:
                remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                try:
                    ev = await asyncio.wait_for(stream.__anext__(), remaining)
                except StopAsyncIteration:
                    # The backend ended without an exit event: say so rather than
                    # leave the client without one.
                    yield ExecEvent("exit", exit_code=255)
                    return
                except TimeoutError:
                    yield ExecEvent("exit", exit_code=TIMEOUT_EXIT_CODE)
                    return
                except sandbox_exec.SandboxUnreachable as exc:
                    if first:
                        raise SandboxUnreachable(f"sandbox '{name}' is unreachable: {exc}") from exc
                    yield ExecEvent("exit", exit_code=255)
                    return
                first = False
                if ev.kind == "exit":
                    yield ExecEvent("exit", exit_code=int(ev.exit_code if ev.exit_code is not None else 255))
                    return
                if ev.kind in ("stdout", "stderr"):
                    yield ExecEvent(ev.kind, bytes(ev.data))
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()

    # ------------------------------------------------------------------ ssh sessions

    async def create_ssh_session(self, name: str, workspace: str = st.DEFAULT_WORKSPACE) -> tuple[str, Any, SandboxRecord]:
        """Issue a ``/connect/ssh`` token bound to sandbox ``name``.

        :returns: ``(token, session, record)``; ``session.expires_at`` is unix seconds.
        :raises SandboxNotFound: no such sandbox.
        """
        record = await self._record(name, workspace)
        token, session = self.ssh_sessions.create(record.id)
        log.info("event=ssh_session_created sandbox=%s expires=%d", record.id, int(session.expires_at))
        return token, session, record

    async def revoke_ssh_session(self, token: str, *, allow_missing: bool = False) -> str:
        """Revoke a token; return ``COMPLETED`` (or ``ALREADY_ABSENT`` with ``allow_missing``).

        :raises NotFound: unknown, expired or already revoked token without ``allow_missing``.
        """
        if self.ssh_sessions.revoke(token):
            log.info("event=ssh_session_revoked")
            return "COMPLETED"
        if allow_missing:
            return "ALREADY_ABSENT"
        raise NotFound("SSH session token not found (unknown, expired or already revoked)")

    async def sandbox_by_id(self, sandbox_id: str) -> SandboxRecord | None:
        """Return the sandbox with id ``sandbox_id``, or None."""
        if not sandbox_id or len(sandbox_id) > 128:
            return None
        return await asyncio.to_thread(self.store.get_sandbox, sandbox_id)

    # ------------------------------------------------------------------ workspaces

    async def get_workspace(self, name: str) -> st.WorkspaceRecord:
        """Return workspace ``name``; :raises WorkspaceNotFound:."""
        found = await asyncio.to_thread(self.store.get_workspace, name)
        if found is None:
            raise WorkspaceNotFound(name)
        return found

    async def list_workspaces(self) -> list[st.WorkspaceRecord]:
        """Return every workspace (``default`` always among them)."""
        return await asyncio.to_thread(self.store.list_workspaces)

    # ------------------------------------------------------------------ supervisors

    async def authenticate_supervisor(self, sandbox_id: str, secret: str) -> SandboxRecord:
        """Return the sandbox whose id and secret these are.

        :raises Unauthenticated: unknown id or wrong secret (one message for both).
        """
        record = await asyncio.to_thread(self.store.get_sandbox, sandbox_id) if sandbox_id else None
        expected = record.secret if record is not None else "0" * 64
        # Compare even for an unknown id so timing says nothing about which ids exist.
        good = hmac.compare_digest(expected.encode(), (secret or "").encode())
        if record is None or not good:
            raise Unauthenticated("unknown sandbox or wrong sandbox secret")
        return record

    async def supervisor_config(self, record: SandboxRecord) -> SupervisorConfig:
        """Return the config a supervisor builds its sandbox from (newest policy revision)."""
        revision = await asyncio.to_thread(self.store.get_policy_revision, record.id)
        if revision is None:  # pragma: no cover - create stores revision 1 atomically
            raise FailedPrecondition(f"sandbox '{record.name}' has no policy")
        spec = record.spec
        return SupervisorConfig(
            sandbox_id=record.id,
            name=record.name,
            workspace=record.workspace,
            labels=dict(record.labels),
            command=list(spec.get("command", [])),
            environment=dict(spec.get("environment", {})),
            extra_hosts=list(spec.get("extra_hosts", [])),
            log_level=str(spec.get("log_level", "")),
            netns_index=record.netns_index,
            policy=revision,
        )

    async def report_status(
        self,
        record: SandboxRecord,
        *,
        phase: str | None = None,
        reason: str = "",
        policy_revision: int = 0,
        policy_status: str = "",
        policy_error: str = "",
        supervisor_pid: int = 0,
    ) -> SandboxRecord:
        """Apply a supervisor's report.

        :param phase: ``READY`` or ``ERROR`` (None: unchanged). A deleting
            sandbox keeps DELETING.
        :param policy_revision: with ``policy_status`` ``loaded``/``failed``: the
            load result of that revision (``policy_loaded`` hook on success).
        :raises InvalidArgument: other phases, unknown policy status or revision.
        :raises SandboxNotFound: the sandbox was deleted meanwhile.
        """
        if phase not in (None, st.READY, st.ERROR):
            raise InvalidArgument("phase", f"a supervisor reports READY or ERROR, not {phase}")
        if policy_revision:
            if policy_status not in (st.LOADED, st.FAILED):
                raise InvalidArgument("policy.status", "must be LOADED or FAILED")
            updated = await asyncio.to_thread(self.store.set_policy_status, record.id, policy_revision, policy_status, policy_error)
            if updated is None:
                raise InvalidArgument("policy.revision", f"sandbox has no policy revision {policy_revision}")
            log.info("event=policy_%s sandbox=%s revision=%d %s", policy_status, record.id, policy_revision, policy_error)
            if policy_status == st.LOADED:
                await asyncio.to_thread(_fire_hook, "policy_loaded", sandbox_id=record.id, version=policy_revision)
        current = await asyncio.to_thread(self.store.get_sandbox, record.id)
        if current is None:
            raise SandboxNotFound(record.name, record.workspace)
        if policy_revision:
            self.watch.publish(record.id, current)  # current_policy_version changed
        if current.phase in (st.DELETING, st.STOPPING, st.STOPPED):
            # A report that raced a delete or a stop does not bring the sandbox back.
            phase = None
        if phase is not None or supervisor_pid:
            current = (
                await self._update(
                    record.id,
                    phase=phase,
                    # READY may carry a message too (a limit was hit: an OOM kill, a full /tmp).
                    reason=reason if phase is not None else None,
                    supervisor_pid=supervisor_pid or None,
                )
                or current
            )
            if phase is not None:
                log.info("event=sandbox_phase sandbox=%s phase=%s reason=%s", record.id, phase, reason)
        return current

    async def watch_policy(self, record: SandboxRecord, after_revision: int = 0) -> AsyncIterator[PolicyRevision]:
        """Yield the sandbox's policy revisions newer than ``after_revision`` as they are stored.

        Ends when the sandbox is deleted.
        """
        last = after_revision
        with self._policy_watchers.subscribe(record.id) as changed:
            while True:
                changed.clear()  # before the read: a revision stored meanwhile sets it again
                newer = [r for r in await asyncio.to_thread(self.store.list_policy_revisions, record.id) if r.revision > last]
                alive = newer or await asyncio.to_thread(self.store.get_sandbox, record.id) is not None
                if not alive:
                    return
                if not newer:
                    await changed.wait()
                    continue
                for revision in newer:
                    last = revision.revision
                    yield revision

    def _log_path(self, sandbox_id: str) -> Path:
        return self.state_dir / "sandbox-logs" / f"{sandbox_id}.jsonl"

    async def push_logs(self, record: SandboxRecord, lines: Iterable[LogLine]) -> int:
        """Append log lines of the sandbox to its JSON-lines file; return how many.

        Watchers get each line, and a platform event for a line that reports one
        (an OOM kill, a refused fork, a full /tmp: :func:`openshell.gateway.watch.event_from_log`).
        """
        path = self._log_path(record.id)
        rows = [{"time": ln.time, "level": ln.level, "target": ln.target, "message": ln.message, "fields": dict(ln.fields)} for ln in lines]

        def write() -> int:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Bounded: past MAX_LOG_BYTES the file becomes the one backup (.1).
            try:
                if path.stat().st_size > MAX_LOG_BYTES:
                    path.replace(path.with_suffix(".jsonl.1"))
            except FileNotFoundError:
                pass
            with open(path, "a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(row) + "\n" for row in rows)
            return len(rows)

        count = await asyncio.to_thread(write)
        for i, row in enumerate(rows):
            if i and i % PUBLISH_CHUNK == 0:
                # Let watchers drain between chunks: a big batch alone must not
                # overrun a watcher that keeps up.
                await asyncio.sleep(0)
            self.watch.publish(record.id, LogRow(row))
            event = event_from_log(row)
            if event is not None:
                self.watch.publish(record.id, event)
        return count

    async def read_logs(self, name: str, workspace: str = st.DEFAULT_WORKSPACE, *, tail: int = 0) -> list[dict[str, Any]]:
        """Return pushed log records of the sandbox (the last ``tail`` when > 0)."""
        record = await self._record(name, workspace)

        def read() -> list[dict[str, Any]]:
            try:
                text = self._log_path(record.id).read_text(encoding="utf-8")
            except FileNotFoundError:
                return []
            rows = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
            return rows[-tail:] if tail > 0 else rows

        return await asyncio.to_thread(read)

    async def read_logs_filtered(
        self, name: str, workspace: str | None = st.DEFAULT_WORKSPACE, *, lines: int = 200, min_level: str = "", since: float = 0.0
    ) -> tuple[list[dict[str, Any]], int]:
        """Pushed log records of a sandbox for ``GetSandboxLogs``.

        :param lines: the last N matching records.
        :param min_level: ``debug`` < ``info`` < ``warning`` < ``error``; empty = all.
        :param since: unix seconds; only records at or after it.
        :returns: ``(records oldest first, total records held)``; each record has
            ``sandbox_id`` added.
        :raises SandboxNotFound: unknown sandbox.
        """
        record = await self._record(name, workspace or st.DEFAULT_WORKSPACE)
        floor = _LOG_LEVELS.get(min_level.lower(), 0) if min_level else 0

        def read() -> tuple[list[dict[str, Any]], int]:
            rows: list[dict[str, Any]] = []
            for path in (self._log_path(record.id).with_suffix(".jsonl.1"), self._log_path(record.id)):
                try:
                    text = path.read_text(encoding="utf-8")
                except FileNotFoundError:
                    continue
                for ln in text.splitlines():
                    try:
                        rows.append(json.loads(ln))
                    except ValueError:
                        continue
            total = len(rows)
            keep = [
                dict(r, sandbox_id=record.id)
                for r in rows
                if _LOG_LEVELS.get(str(r.get("level", "")).lower(), 1) >= floor and float(r.get("time") or 0) >= since
            ]
            return keep[-lines:] if lines > 0 else keep, total

        return await asyncio.to_thread(read)

    # ------------------------------------------------------------------ reconcile / monitor

    async def apply_driver_status(self, sandbox_id: str, status: SandboxStatus, *, context: str = "") -> SandboxRecord | None:
        """Fold what the driver sees into the record: a dead supervisor makes the sandbox ERROR.

        READY from the driver is ignored (the supervisor reports readiness itself).
        :returns: the updated record, or None when unchanged or unknown.
        """
        record = await asyncio.to_thread(self.store.get_sandbox, sandbox_id)
        if record is None or record.phase in (st.ERROR, st.DELETING, st.STOPPING, st.STOPPED):
            return None
        if status.phase in (st.ERROR, st.STOPPED):
            reason = status.reason or f"compute driver reports {status.phase}"
            if context:
                reason = f"{context}: {reason}"
            log.warning("event=sandbox_failed sandbox=%s reason=%s", sandbox_id, reason)
            self._event(sandbox_id, "driver", "Warning", "SupervisorExited", reason)
            return await self._update(sandbox_id, phase=st.ERROR, reason=reason)
        return None

    async def reconcile(self) -> None:
        """On gateway start: mark sandboxes whose supervisor died ERROR (never drop
        them), and finish deletions a previous gateway was interrupted in."""
        for record in await asyncio.to_thread(self.store.list_sandboxes, None):
            if record.phase == st.DELETING:
                with contextlib.suppress(DriverFailed):
                    await self._remove(record)
                continue
            if record.phase == st.STOPPING:  # a stop the previous gateway did not finish
                with contextlib.suppress(DriverFailed):
                    await self._finish_stop(record)
                continue
            try:
                status = await asyncio.to_thread(self.driver.status, record.id)
            except Exception as exc:  # noqa: BLE001 - a driver that cannot answer means the sandbox is lost
                status = SandboxStatus(st.ERROR, f"compute driver cannot report status: {exc}")
            await self.apply_driver_status(record.id, status, context="after gateway restart")

    def _begin_launch(self, sandbox_id: str) -> None:
        """Mark a driver create/start of ``sandbox_id`` as running (until the caller pops it
        from ``_driver_launching``): the monitor leaves the sandbox alone meanwhile."""
        self._driver_launching[sandbox_id] = time.monotonic()
        self._launches[sandbox_id] = self._launches.get(sandbox_id, 0) + 1

    def _launching_now(self, sandbox_id: str) -> bool:
        """True while the driver's create/start of ``sandbox_id`` runs (at most ``LAUNCH_GRACE`` s)."""
        started = self._driver_launching.get(sandbox_id)
        if started is None:
            return False
        if time.monotonic() - started < LAUNCH_GRACE:
            return True
        self._driver_launching.pop(sandbox_id, None)
        return False

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.monitor_interval)
            try:
                # Counted before the store is read: a create's record is visible there a
                # moment before its launch is marked (both in the create's thread), so a
                # launch begun at any point after this line makes the answer stale.
                launches = dict(self._launches)
                records = await asyncio.to_thread(self.store.list_sandboxes, None)
                running = [r.id for r in records if r.phase in (st.PROVISIONING, st.READY) and not self._launching_now(r.id)]
                # One thread hop for the whole tick, not two per sandbox: with hundreds
                # running, the per-sandbox hops kept the event loop (and the starts it
                # answers) busy every tick.
                for sandbox_id, status in await asyncio.to_thread(self._driver_statuses, running):
                    if self._launching_now(sandbox_id) or self._launches.get(sandbox_id, 0) != launches.get(sandbox_id, 0):
                        continue  # a create or start began while the driver was asked: its answer is stale
                    if status.phase in (st.ERROR, st.STOPPED):  # anything else leaves the record as it is
                        await self.apply_driver_status(sandbox_id, status)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep monitoring; a transient store error is not fatal
                log.warning("event=monitor_failed error=%s", exc)

    def _driver_statuses(self, sandbox_ids: list[str]) -> list[tuple[str, SandboxStatus]]:
        """The driver's status of each sandbox (in a worker thread); a driver that cannot
        answer for one makes that one ERROR, as in :meth:`reconcile`."""
        out = []
        for sandbox_id in sandbox_ids:
            try:
                status = self.driver.status(sandbox_id)
            except Exception as exc:  # noqa: BLE001 - as in reconcile()
                status = SandboxStatus(st.ERROR, f"compute driver cannot report status: {exc}")
            out.append((sandbox_id, status))
        return out


def _package_version() -> str:
    try:
        return version("openshell-core")
    except PackageNotFoundError:  # not installed as a distribution (source checkout)
        return "0.0.0"
