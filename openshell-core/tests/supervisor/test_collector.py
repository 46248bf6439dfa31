"""A supervisor starts with the garbage collector off (``python -m openshell.supervisor``)
and turns it back on once the start is over: off, a supervisor would never free a
reference cycle; on during the start, it costs ~0.1 s of CPU before READY."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import gc, runpy, sys
sys.argv = ["openshell-sandbox", "--help"]
try:
    runpy.run_module("openshell.supervisor", run_name="__main__")
except SystemExit:
    pass
print("during-start", gc.isenabled())
from openshell.supervisor.main import collector_on
before = gc.get_freeze_count()
collector_on()
print("after", gc.isenabled(), gc.get_freeze_count() > before)
collector_on()  # a second call (the fork server's child, a restart) changes nothing
print("again", gc.isenabled())
"""


def test_the_start_runs_with_the_collector_off_and_it_is_on_afterwards():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60)
    lines = [line for line in out.stdout.splitlines() if line.split(" ")[0] in ("during-start", "after", "again")]
    assert lines == ["during-start False", "after True True", "again True"], (out.stdout, out.stderr)
