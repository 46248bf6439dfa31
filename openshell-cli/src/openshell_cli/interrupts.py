"""Ctrl-C handling: hold it while a step must not be cut in half."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

RETRY_DELAY = 0.005  # seconds after a dropped Ctrl-C until it is handled again


def install() -> None:
    """Make a Ctrl-C that Python would drop arrive anyway.

    SIGINT raises ``KeyboardInterrupt`` wherever the main thread is. When that
    is inside a callback Python cannot raise from (a weakref callback such as
    the import system's module-lock clean-up, a ``__del__``), Python prints
    "Exception ignored in ..." with a traceback and goes on as if nothing had
    happened: a ``create`` then carries on to READY. This hook takes such an
    interrupt instead, prints nothing, and has it handled again 5 ms later (a
    one-shot ``SIGALRM``, once the callback has returned), by whatever handles
    SIGINT then: raised at an ordinary line, or held by :func:`deferred`.
    Main thread only (where signal handlers live).
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGALRM, _again)
        sys.unraisablehook = _unraisable


def _unraisable(unraisable: Any) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        signal.setitimer(signal.ITIMER_REAL, RETRY_DELAY)
        return
    sys.__unraisablehook__(unraisable)


def _again(_signum: int, frame: Any) -> None:
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)


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
