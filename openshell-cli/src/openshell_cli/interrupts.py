"""Ctrl-C handling: hold it while a step must not be cut in half."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT until the block ends, then raise ``KeyboardInterrupt`` (once).

    For a step whose result is needed to clean up, e.g. the CreateSandbox call
    whose answer carries the name of the sandbox to delete again. Outside the
    main thread (where Python cannot set signal handlers), or when SIGINT is
    ignored (a background job), the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
        if caught:
            raise KeyboardInterrupt
