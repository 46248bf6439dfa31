"""The docker driver's status while a create is still running (no engine needed)."""

from __future__ import annotations

import types

from openshell_plugin_docker.driver import DockerDriver


def _driver(tmp_path) -> DockerDriver:
    d = DockerDriver.__new__(DockerDriver)  # no engine: only status() is exercised
    d.ctx = types.SimpleNamespace(state_dir=str(tmp_path))
    d._creating = set()
    d._container = lambda sid: None  # type: ignore[method-assign]
    return d


def test_a_sandbox_whose_create_runs_is_provisioning_not_gone(tmp_path):
    # The first create waits seconds for the runtime build before the container
    # exists; a status check then must not turn the sandbox to ERROR.
    d = _driver(tmp_path)
    d._creating.add("sb1")
    assert d.status("sb1").phase == "PROVISIONING"
    d._creating.discard("sb1")
    st = d.status("sb1")
    assert st.phase == "ERROR" and "is gone" in st.reason
