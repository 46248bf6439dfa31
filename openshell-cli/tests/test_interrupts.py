"""Ctrl-C that Python would drop (``openshell_cli.interrupts.install``)."""

from __future__ import annotations

import subprocess
import sys

# A KeyboardInterrupt raised inside a weakref callback, as when Ctrl-C lands in the
# import system's module-lock clean-up: Python prints "Exception ignored" and drops it.
# SIGINT is set to its default first: a test run started in the background by a
# shell ignores SIGINT, and children inherit that (a user's terminal does not).
CHILD = """
import signal, sys, time, weakref
from openshell_cli import interrupts
signal.signal(signal.SIGINT, signal.default_int_handler)
if sys.argv[1] == "installed":
    interrupts.install()
class A:
    pass
a = A()
def cb(_):
    raise KeyboardInterrupt
r = weakref.ref(a, cb)
try:
    del a
    for _ in range(500):
        time.sleep(0.001)
    print("lost")
except KeyboardInterrupt:
    print("delivered")
"""


def _run(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=60)


def test_a_ctrl_c_python_would_drop_is_delivered_without_a_traceback():
    assert _run("bare").stdout.strip() == "lost"  # what happens without the hook
    p = _run("installed")
    assert p.stdout.strip() == "delivered" and p.stderr == "", p.stderr


def test_a_dropped_ctrl_c_inside_a_deferred_block_is_held_like_any_other():
    code = CHILD.replace("    del a\n", "    with interrupts.deferred():\n        del a\n        time.sleep(0.05)\n        print('held')\n")
    p = subprocess.run([sys.executable, "-c", code, "installed"], capture_output=True, text=True, timeout=60)
    assert p.stdout.split() == ["held", "delivered"] and p.stderr == "", (p.stdout, p.stderr)
