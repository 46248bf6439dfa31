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


def test_stop_keeps_every_file_and_delete_removes_them(tmp_path):
    """``stop`` ends the supervisor (its pid is gone) but keeps the sandbox's
    directory with its workdir; ``start`` runs a new supervisor; ``delete`` removes all."""
    from openshell.drivers.local import _alive
    from openshell.plugin.kinds import DriverContext

    contract = TestLocalDriverContract()
    sid = "c0ffee00-0000-4000-8000-" + os.urandom(6).hex()
    driver = LocalDriver(DriverContext(state_dir=str(tmp_path / "state"), gateway_endpoint="https://127.0.0.1:1"))
    try:
        record = contract.sandbox_record(sid)
        driver.create(record)
        d = driver.sandbox_dir(sid)
        first = int((d / "supervisor.pid").read_text())
        (d / "workdir").mkdir(exist_ok=True)
        (d / "workdir" / "kept.txt").write_text("still here")
        driver.stop(sid)
        assert not _alive(first)
        assert (d / "workdir" / "kept.txt").read_text() == "still here"
        assert (d / "supervisor.json").is_file()
        assert driver.status(sid).phase == "STOPPED"
        driver.start(record)
        second = int((d / "supervisor.pid").read_text())
        assert second != first
        assert (d / "workdir" / "kept.txt").read_text() == "still here"
    finally:
        driver.delete(sid)
        driver.close()
    assert not d.exists()
