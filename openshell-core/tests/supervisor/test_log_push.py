"""The supervisor's log queue: bounded batches that a gateway can always accept."""

from __future__ import annotations

import logging

from openshell.supervisor.log_push import MAX_MESSAGE, PushHandler, _batch


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("openshell.supervisor.proxy", logging.INFO, __file__, 1, message, None, None)


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
    import asyncio

    from openshell.supervisor.log_push import push_loop

    class Link:
        def __init__(self) -> None:
            self.batches: list[list[str]] = []
            self.pushed = asyncio.Event()

        async def push_log_batch(self, batch) -> bool:
            self.batches.append([r.message for r in batch.records])
            self.pushed.set()
            return True

    def record(level: int, message: str) -> logging.LogRecord:
        return logging.LogRecord("openshell.supervisor.proxy", level, __file__, 1, message, None, None)

    async def run() -> list[list[str]]:
        handler, link = PushHandler(), Link()
        task = asyncio.ensure_future(push_loop(link, handler, interval=3600))  # an hour: only a warning can wake it
        await asyncio.sleep(0)
        handler.emit(record(logging.INFO, "event=ready"))
        await asyncio.sleep(0.2)
        assert link.batches == []  # info lines wait for the interval
        # from another thread, as the proxy's decision logging may be
        await asyncio.to_thread(handler.emit, record(logging.WARNING, "event=decision decision=DENIED"))
        await asyncio.wait_for(link.pushed.wait(), 30)
        task.cancel()
        return link.batches

    assert asyncio.run(run()) == [["event=ready", "event=decision decision=DENIED"]]
