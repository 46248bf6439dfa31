"""The built-in ``local`` compute driver passes the compute-driver plugin contract.

``test_created_sandbox_deletes_twice`` starts a real supervisor (root) that
cannot reach its gateway, then deletes the sandbox twice.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from openshell.drivers.local import LocalDriver
from openshell.plugin.testing import ComputeDriverContract

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the local driver runs supervisors as root")


class TestLocalDriverContract(ComputeDriverContract):
    plugin_class = LocalDriver

    def test_created_sandbox_deletes_twice(self, tmp_path):
        super().test_created_sandbox_deletes_twice(tmp_path)
        # every file of the sandbox is gone, not just its process
        assert not any((Path(tmp_path) / "state" / "sandboxes").glob("*"))
