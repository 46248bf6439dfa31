"""What the fork server builds before it forks (``openshell.supervisor.forkserver._warm``)."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import json, os, sys
from openshell.supervisor import forkserver
forkserver._warm()
from openshell.policy import default_policy
from openshell_plugin_opa import engine
from openshell_plugin_opa.compile import policy_data
key = engine._data_key(policy_data(default_policy()))
assert list(engine._built) == [key], "built for another document than the default policy's"
print(json.dumps([list(engine._built), len(engine._spare), len(os.listdir("/proc/self/task")), "paramiko" in sys.modules]))
"""


def test_the_warm_server_holds_the_default_policy_compiled_and_forks_single_threaded():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=True).stdout
    built, spare, threads, paramiko = json.loads(out)
    # A supervisor with the default policy takes the built interpreter; any other policy the spare one.
    assert len(built) == 1 and spare == 1, (built, spare)
    assert threads == 1  # a fork copies only the calling thread: nothing may run beside it
    assert paramiko  # shared: a supervisor's first exec would otherwise import it (~6 MiB each)
