"""Stopping and starting sandboxes (``StopSandbox``/``StartSandbox``), a part of
:class:`openshell.gateway.core.GatewayCore`.

Stop ends every process of the sandbox through the compute driver and keeps
its record, files (``/sandbox``) and policy revisions: STOPPING, then STOPPED.
Start asks the driver to run it again: PROVISIONING, then READY when the new
supervisor reports it (it reads the newest policy revision, as at create).
Namespaces, cgroup and ``/tmp`` belong to one supervisor run and are made anew.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from openshell.gateway import store as st
from openshell.gateway.errors import DriverFailed, FailedPrecondition, SandboxNotReady
from openshell.plugin.kinds import ComputeDriver, DriverUnsupported

if TYPE_CHECKING:
    from openshell.gateway.ssh_sessions import SshSessions
    from openshell.gateway.store import SandboxRecord, Store

log = logging.getLogger("openshell.gateway")

STOPPED_REASON = "stopped on request; 'openshell sandbox start {name}' runs it again"


class StopStartMixin:
    """``stop_sandbox``/``start_sandbox`` of the gateway core (uses its store,
    driver, watch hub and record helpers)."""

    store: Store
    driver: ComputeDriver
    ssh_sessions: SshSessions
    _driver_launching: dict[str, float]

    if TYPE_CHECKING:  # provided by GatewayCore

        async def _record(self, name: str, workspace: str) -> SandboxRecord: ...
        async def _update(self, sandbox_id: str, **changes: Any) -> SandboxRecord | None: ...
        async def _info(self, record: SandboxRecord) -> Any: ...
        def _event(self, sandbox_id: str, source: str, type_: str, reason: str, message: str, **metadata: str) -> None: ...
        def _begin_launch(self, sandbox_id: str) -> None: ...

    def _require_driver(self, operation: str) -> None:
        """:raises FailedPrecondition: the driver keeps the ABC's default ``operation`` (not supported)."""
        if getattr(type(self.driver), operation) is getattr(ComputeDriver, operation):
            verb = "stop" if operation == "stop" else "start stopped"
            raise FailedPrecondition(f"compute driver '{self.driver.name}' cannot {verb} sandboxes; delete and recreate the sandbox instead")

    async def stop_sandbox(self, name: str, workspace: str = st.DEFAULT_WORKSPACE) -> Any:
        """End every process of sandbox ``name``, keep its record, files and policy.

        Returns when the driver has stopped it (phase STOPPED). Stopping a STOPPED
        sandbox returns it unchanged; an ERROR one is stopped too (what its dead
        supervisor left behind is removed), so that ``start`` can run it again.

        :returns: the sandbox (``SandboxInfo``), STOPPED.
        :raises SandboxNotFound: no such sandbox.
        :raises SandboxNotReady: it is being deleted.
        :raises FailedPrecondition: the compute driver cannot stop sandboxes, or refuses to
            stop this one (``DriverUnsupported``: nothing was done, it runs on unchanged).
        :raises DriverFailed: the driver failed (the sandbox is ERROR with the reason).
        """
        record = await self._record(name, workspace)
        if record.phase == st.STOPPED:
            return await self._info(record)
        if record.phase == st.DELETING:
            raise SandboxNotReady(f"sandbox '{name}' is being deleted; it cannot be stopped")
        self._require_driver("stop")
        stopping = await self._update(record.id, phase=st.STOPPING, reason="stopping on request")
        if stopping is None:  # deleted meanwhile
            return await self._info(await self._record(name, workspace))
        self._event(record.id, "gateway", "Normal", "Stopping", "stopping every process of the sandbox")
        return await self._info(await self._finish_stop(stopping, before=record))

    async def _finish_stop(self, record: SandboxRecord, before: SandboxRecord | None = None) -> SandboxRecord:
        """Have the driver stop the STOPPING sandbox; STOPPED (or ERROR and :class:`DriverFailed`).

        :param before: the record before the stop was asked for: a driver that refuses this
            sandbox (``DriverUnsupported``, e.g. its files would not survive) leaves it as it was.
        :raises FailedPrecondition: the driver refused (with ``before``).
        """
        try:
            await asyncio.to_thread(self.driver.stop, record.id)
        except Exception as exc:  # noqa: BLE001 - any driver failure: ERROR with the reason
            if isinstance(exc, DriverUnsupported) and before is not None:
                await self._update(record.id, phase=before.phase, reason=before.reason)
                self._event(record.id, "driver", "Warning", "StopRefused", str(exc))
                raise FailedPrecondition(f"sandbox '{record.name}' was not stopped: {exc}") from exc
            reason = f"compute driver could not stop the sandbox: {exc}"
            await self._update(record.id, phase=st.ERROR, reason=reason)
            self._event(record.id, "driver", "Warning", "StopFailed", reason)
            raise DriverFailed(f"sandbox '{record.name}': {reason}; retry 'openshell sandbox stop {record.name}'") from exc
        # Tokens for /connect/ssh were for the supervisor that is gone.
        self.ssh_sessions.revoke_sandbox(record.id)
        updated = await self._update(record.id, phase=st.STOPPED, reason=STOPPED_REASON.format(name=record.name)) or record
        log.info("event=sandbox_stopped sandbox=%s name=%s", record.id, record.name)
        self._event(record.id, "gateway", "Normal", "Stopped", "every process of the sandbox ended; its files are kept")
        return updated

    async def start_sandbox(self, name: str, workspace: str = st.DEFAULT_WORKSPACE) -> Any:
        """Run stopped sandbox ``name`` again with the same files and newest policy.

        Returns once the driver has started its supervisor (PROVISIONING; READY
        follows when the supervisor reports it). A PROVISIONING or READY sandbox
        is returned unchanged.

        :returns: the sandbox (``SandboxInfo``).
        :raises SandboxNotFound: no such sandbox.
        :raises SandboxNotReady: it is ERROR, STOPPING or DELETING (an ERROR one:
            stop it first, which removes what its supervisor left behind).
        :raises FailedPrecondition: the compute driver cannot start stopped sandboxes.
        :raises DriverFailed: the driver failed (the sandbox is ERROR with the reason).
        """
        record = await self._record(name, workspace)
        if record.phase in (st.PROVISIONING, st.READY):
            return await self._info(record)
        if record.phase != st.STOPPED:
            hint = f"; run 'openshell sandbox stop {name}' first" if record.phase == st.ERROR else ""
            raise SandboxNotReady(f"sandbox '{name}' is {record.phase}, not STOPPED{hint}")
        self._require_driver("start")
        revision = await asyncio.to_thread(self.store.get_policy_revision, record.id)
        if revision is None:  # pragma: no cover - create stores revision 1 atomically
            raise FailedPrecondition(f"sandbox '{name}' has no policy")
        # Before PROVISIONING: the monitor must not take the stopped supervisor's
        # dead pid for a crash while the driver starts the new one.
        self._begin_launch(record.id)
        try:
            starting = await self._update(record.id, phase=st.PROVISIONING, reason="starting on request")
            if starting is None:  # deleted meanwhile
                return await self._info(await self._record(name, workspace))
            self._event(record.id, "gateway", "Normal", "Starting", "starting the sandbox's supervisor again")
            try:
                await asyncio.to_thread(self.driver.start, starting.driver_view(revision.yaml))
            except Exception as exc:  # noqa: BLE001 - any driver failure: ERROR with the reason
                reason = f"compute driver could not start the sandbox: {exc}"
                await self._update(record.id, phase=st.ERROR, reason=reason)
                self._event(record.id, "driver", "Warning", "StartFailed", reason)
                raise DriverFailed(f"sandbox '{name}': {reason}") from exc
        finally:
            self._driver_launching.pop(record.id, None)
        log.info("event=sandbox_started sandbox=%s name=%s", record.id, record.name)
        return await self._info(starting)
