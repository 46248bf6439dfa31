"""The supervisor's log queue: bounded batches that a gateway can always accept."""

from __future__ import annotations

import asyncio
import logging
import time

from openshell.supervisor.log_push import MAX_MESSAGE, PushHandler, _batch, flush, push_loop


def _record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("openshell.supervisor.proxy", level, __file__, 1, message, None, None)


class _Link:
    """A gateway that records what was pushed. ``fail`` pushes are refused first
    (the gateway is away); with ``hang`` the first push never returns (on the wire
    when the stop comes) and sets ``in_flight``. Made inside the test's event loop."""

    def __init__(self, fail: int = 0, hang: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.pushed = asyncio.Event()
        self.in_flight = asyncio.Event()
        self.fail, self.hang = fail, hang

    @property
    def messages(self) -> list[str]:
        return [m for b in self.batches for m in b]

    async def push_log_batch(self, batch) -> bool:
        if self.hang:
            self.in_flight.set()
            await asyncio.sleep(3600)
        if self.fail:
            self.fail -= 1
            return False
        self.batches.append([r.message for r in batch.records])
        self.pushed.set()
        return True


def test_batches_stop_at_the_byte_budget_and_keep_order():
    handler = PushHandler()
    for i in range(10):
        handler.emit(_record(f"{i}" + "x" * 999))
    first = handler.drain(max_bytes=3000)
    assert [m[3][0] for m in first] == ["0", "1", "2"]  # the record that crosses the budget is the last one
    rest = handler.drain()
    assert [m[3][0] for m in rest] == [str(i) for i in range(3, 10)]
    assert handler.drain() == []


def test_a_runaway_message_is_cut_so_no_batch_becomes_unsendable():
    handler = PushHandler()
    handler.emit(_record("y" * (MAX_MESSAGE * 50)))
    [(_, level, target, message)] = handler.drain()
    assert len(message) < MAX_MESSAGE + 20 and message.endswith("[truncated]")
    batch = _batch([(0.0, level, target, message)])
    assert batch.ByteSize() < 4 * 1024 * 1024
    assert not batch.records[0].fields  # the gateway parses fields, off the proxy's loop


def test_a_warning_is_pushed_without_waiting_for_the_interval_and_info_lines_wait():
    async def run() -> list[list[str]]:
        handler, link = PushHandler(), _Link()
        task = asyncio.ensure_future(push_loop(link, handler, interval=3600))  # an hour: only a warning can wake it
        await asyncio.sleep(0)
        handler.emit(_record("event=ready"))
        await asyncio.sleep(0.2)
        assert link.batches == []  # info lines wait for the interval
        # from another thread, as the proxy's decision logging may be
        await asyncio.to_thread(handler.emit, _record("event=decision decision=DENIED", logging.WARNING))
        await asyncio.wait_for(link.pushed.wait(), 30)
        task.cancel()
        return link.batches

    assert asyncio.run(run()) == [["event=ready", "event=decision decision=DENIED"]]


def test_an_idle_loop_sleeps_until_a_line_comes_and_then_pushes_it_after_the_interval():
    """Hundreds of idle sandboxes: an empty queue must not wake the loop on a timer."""

    class Counting(PushHandler):
        drains = 0

        def drain(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            Counting.drains += 1
            return super().drain(*args, **kwargs)

    async def run() -> tuple[int, list[list[str]], int]:
        handler, link = Counting(), _Link()
        task = asyncio.ensure_future(push_loop(link, handler, interval=0.01))
        await asyncio.sleep(0.3)  # 30 intervals with nothing queued
        idle_drains = Counting.drains
        # from another thread, as the proxy's decision logging may be
        await asyncio.to_thread(handler.emit, _record("event=ready"))
        await asyncio.wait_for(link.pushed.wait(), 30)
        await asyncio.sleep(0.3)
        task.cancel()
        return idle_drains, link.batches, Counting.drains

    idle_drains, batches, drains = asyncio.run(run())
    assert idle_drains == 0
    assert batches == [["event=ready"]]
    assert drains == 1  # woke once for the line, then slept again


def test_a_failed_push_is_retried_without_a_new_line():
    async def run() -> list[str]:
        handler, link = PushHandler(), _Link(fail=1)  # the gateway is away at first
        task = asyncio.ensure_future(push_loop(link, handler, interval=0.01))
        handler.emit(_record("event=one"))
        await asyncio.wait_for(link.pushed.wait(), 30)
        task.cancel()
        return link.messages

    assert asyncio.run(run()) == ["event=one"]


def test_a_stopping_supervisor_pushes_its_last_lines_and_a_batch_in_flight_is_not_lost():
    async def run() -> list[str]:
        handler, link = PushHandler(), _Link(hang=True)  # the first push is still on the wire when the stop comes
        task = asyncio.ensure_future(push_loop(link, handler, interval=0.01))
        handler.emit(_record("event=one"))
        await asyncio.wait_for(link.in_flight.wait(), 30)
        handler.emit(_record("event=two"))  # queued behind the batch in flight
        task.cancel()
        await asyncio.wait([task])
        link.hang = False
        handler.emit(_record("event=shutdown"))
        await flush(link, handler)
        return link.messages

    assert asyncio.run(run()) == ["event=one", "event=two", "event=shutdown"]


def test_flush_gives_up_when_the_gateway_is_gone():
    async def run() -> None:
        await flush(_Link(hang=True), handler, timeout=0.2)

    handler = PushHandler()
    handler.emit(_record("event=last"))
    t0 = time.monotonic()
    asyncio.run(run())
    assert time.monotonic() - t0 < 5


def test_flush_never_stops_a_shutdown():
    class Closed:
        async def push_log_batch(self, batch) -> bool:
            raise RuntimeError("the channel is closed")

    handler = PushHandler()
    handler.emit(_record("event=last"))
    asyncio.run(flush(Closed(), handler))  # no exception
