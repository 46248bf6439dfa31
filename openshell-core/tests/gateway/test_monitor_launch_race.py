"""The liveness monitor against a sandbox whose driver create/start has not returned yet.

Until the driver has started a supervisor, its status says so ("never started", or
the stopped supervisor's dead pid); the monitor must not turn that into ERROR. The
bench saw it: one create in ~50 became ERROR "supervisor was never started or its
pid file is gone" when a monitor tick fell between the store insert and the driver's create.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from openshell.gateway import core as gc
from openshell.gateway import store as st
from openshell.gateway.store import Store
from openshell.plugin.kinds import DriverContext, SandboxStatus
from openshell.plugin.testing import RecordingDriver

pytestmark = pytest.mark.timeout(60)


class SlowDriver(RecordingDriver):
    """create/start wait for ``release``; status is what a real driver says before a supervisor runs."""

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.running: set[str] = set()

    def create(self, sandbox: Mapping[str, Any]) -> None:
        self.entered.set()
        self.release.wait(30)
        super().create(sandbox)
        self.running.add(str(sandbox["id"]))

    def start(self, sandbox: Mapping[str, Any]) -> None:
        self.entered.set()
        self.release.wait(30)
        super().start(sandbox)
        self.running.add(str(sandbox["id"]))

    def stop(self, sandbox_id: str) -> None:
        super().stop(sandbox_id)
        self.running.discard(sandbox_id)

    def status(self, sandbox_id: str) -> SandboxStatus:
        if sandbox_id in self.running:
            return SandboxStatus("PROVISIONING")
        return SandboxStatus("ERROR", "supervisor was never started or its pid file is gone")


async def _while_the_driver_is_slow(core: gc.GatewayCore, driver: SlowDriver, call) -> Any:
    task = asyncio.ensure_future(call())
    await asyncio.to_thread(driver.entered.wait, 10)
    await asyncio.sleep(0.3)  # ~30 monitor ticks while the driver works
    driver.release.set()
    return await task


def test_a_sandbox_being_created_is_not_failed_by_the_monitor(tmp_path):
    async def main() -> None:
        driver = SlowDriver(DriverContext(state_dir=str(tmp_path), gateway_endpoint="https://127.0.0.1:1"))
        store = Store(tmp_path / "gateway.db")
        core = gc.GatewayCore(tmp_path, store, driver, version="t", monitor_interval=0.01)
        await core.start()
        try:
            await _while_the_driver_is_slow(core, driver, lambda: core.create_sandbox(name="slow"))
            await asyncio.sleep(0.1)  # and after it returned
            (record,) = [r for r in store.list_sandboxes(None) if r.name == "slow"]
            assert record.phase == st.PROVISIONING, record.reason
            # a supervisor that really dies is still seen
            driver.running.clear()
            await asyncio.sleep(0.2)
            assert store.get_sandbox(record.id).phase == st.ERROR
        finally:
            await core.stop()
            store.close()

    asyncio.run(main())


def test_a_sandbox_being_started_again_is_not_failed_by_the_monitor(tmp_path):
    async def main() -> None:
        driver = SlowDriver(DriverContext(state_dir=str(tmp_path), gateway_endpoint="https://127.0.0.1:1"))
        driver.release.set()
        store = Store(tmp_path / "gateway.db")
        core = gc.GatewayCore(tmp_path, store, driver, version="t", monitor_interval=0.01)
        await core.start()
        try:
            await core.create_sandbox(name="again")
            (record,) = [r for r in store.list_sandboxes(None) if r.name == "again"]
            await core.stop_sandbox("again")
            assert store.get_sandbox(record.id).phase == st.STOPPED
            driver.entered.clear()
            driver.release.clear()
            await _while_the_driver_is_slow(core, driver, lambda: core.start_sandbox("again"))
            await asyncio.sleep(0.1)
            got = store.get_sandbox(record.id)
            assert got.phase == st.PROVISIONING, got.reason
        finally:
            await core.stop()
            store.close()

    asyncio.run(main())


@contextlib.asynccontextmanager
async def _monitored(tmp_path, driver: SlowDriver) -> AsyncIterator[tuple[gc.GatewayCore, Store]]:
    """A started gateway core over ``driver`` whose monitor ticks every 10 ms."""
    store = Store(tmp_path / "gateway.db")
    core = gc.GatewayCore(tmp_path, store, driver, version="t", monitor_interval=0.01)
    await core.start()
    try:
        yield core, store
    finally:
        await core.stop()
        store.close()


class StaleDriver(SlowDriver):
    """status of ``stale`` stops inside the call until ``go``, then answers a dead supervisor."""

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.release.set()
        self.stale: str | None = None
        self.asked = threading.Event()
        self.go = threading.Event()

    def status(self, sandbox_id: str) -> SandboxStatus:
        if sandbox_id == self.stale:
            self.stale = None
            self.asked.set()
            self.go.wait(10)
            return SandboxStatus("ERROR", "supervisor was never started or its pid file is gone")
        return super().status(sandbox_id)


def test_a_restart_begun_and_done_while_a_tick_asks_the_driver_is_not_failed(tmp_path):
    # A tick asks the driver about every running sandbox in one worker-thread call: an
    # answer taken before a start that has already finished by the time the tick
    # looks at it must be dropped, not turned into ERROR.
    async def main() -> None:
        driver = StaleDriver(DriverContext(state_dir=str(tmp_path), gateway_endpoint="https://127.0.0.1:1"))
        async with _monitored(tmp_path, driver) as (core, store):
            await core.create_sandbox(name="stale")
            (record,) = [r for r in store.list_sandboxes(None) if r.name == "stale"]
            driver.stale = record.id
            await asyncio.to_thread(driver.asked.wait, 10)
            core._begin_launch(record.id)  # a stop + start, done while the driver was asked
            core._driver_launching.pop(record.id, None)
            driver.go.set()
            await asyncio.sleep(0.2)
            got = store.get_sandbox(record.id)
            assert got.phase == st.PROVISIONING, got.reason

    asyncio.run(main())


def test_a_create_marked_only_after_the_tick_read_the_store_is_not_failed(tmp_path):
    # The record of a create is in the store a moment before its launch is marked;
    # a tick that read the store in that moment, and whose driver answer comes back
    # after the create finished, must drop the answer.
    async def main() -> None:
        driver = StaleDriver(DriverContext(state_dir=str(tmp_path), gateway_endpoint="https://127.0.0.1:1"))
        async with _monitored(tmp_path, driver) as (core, store):
            await core.create_sandbox(name="late")
            (record,) = [r for r in store.list_sandboxes(None) if r.name == "late"]
            listed = threading.Event()
            read = store.list_sandboxes

            def list_then_launch(*args, **kwargs):
                records = read(*args, **kwargs)
                if not listed.is_set():
                    listed.set()
                    core._begin_launch(record.id)  # marked after the read; the create then ends
                    core._driver_launching.pop(record.id, None)
                    driver.stale = record.id  # this tick's answer: no supervisor (as before the create)
                return records

            store.list_sandboxes = list_then_launch  # type: ignore[method-assign]
            await asyncio.to_thread(listed.wait, 10)
            driver.go.set()
            await asyncio.sleep(0.2)
            got = read(None)
            assert [r.phase for r in got if r.id == record.id] == [st.PROVISIONING], [r.reason for r in got]

    asyncio.run(main())
