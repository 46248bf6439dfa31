"""Wake-ups for the gateway's long-lived watch streams, one sandbox at a time.

Every running supervisor holds a ``WatchPolicy`` and a ``WatchInferenceBundle``
stream. With one condition for all of them, each create, delete or provider
acknowledgement woke every stream of every sandbox, and each re-read the store
under the condition's lock: with 500 sandboxes held, about 1,000 store reads,
one after another, on the event loop that answers the next sandbox's start.
Here a change to one sandbox wakes only that sandbox's streams; a change that
can concern any of them (an inference route, a provider's credentials) still
wakes all.

Use (no lost wake-up: the event is cleared *before* the state is read, so a
change made while reading leaves it set)::

    with wakeups.subscribe(sandbox_id) as changed:
        while True:
            changed.clear()
            state = await read()
            if state is new: yield state; continue
            await changed.wait()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class Wakeups:
    """Per-key sets of :class:`asyncio.Event`, one per waiting stream. Not thread-safe:
    use it from the event loop's thread only."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def subscribe(self, key: str) -> Iterator[asyncio.Event]:
        """An event set by :meth:`wake` of ``key`` and by :meth:`wake_all`, while the block runs."""
        event = asyncio.Event()
        self._waiters.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            waiting = self._waiters.get(key)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiters[key]

    def wake(self, key: str) -> None:
        """Wake the streams subscribed under ``key`` (none: nothing happens)."""
        for event in self._waiters.get(key, ()):
            event.set()

    def wake_all(self) -> None:
        """Wake every subscribed stream."""
        for waiting in self._waiters.values():
            for event in waiting:
                event.set()
