"""The fork server fills the holes of its heap before it forks
(``openshell.supervisor.forkserver.fill_free_blocks``)."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import json
from openshell.supervisor import forkserver
junk = [bytes(n % 400) + b"x" for n in range(60000)] + [float(n) for n in range(5000)] + [object() for _ in range(5000)]
del junk[::2]  # holes in every size class used
before = forkserver.free_blocks()
filled = forkserver.fill_free_blocks()
after = forkserver.free_blocks()
print(json.dumps([before, filled, after]))
"""


def test_filling_leaves_almost_no_free_block_in_used_pools():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True).stdout
    before, filled, after = json.loads(out)
    free_before = sum(free for _, free in before)
    free_after = sum(free for _, free in after)
    assert before and free_before > 10000, before  # this Python reports its pools
    assert abs(filled - free_before) < free_before / 20  # (the two calls allocate a little)
    # what is left are fresh pools opened by what ran after the filling (a pool
    # with one object counts its other ~300 blocks as free)
    assert free_after < free_before / 10, (free_before, free_after)
