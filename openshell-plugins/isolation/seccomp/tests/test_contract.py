"""The seccomp layer passes the isolation-layer plugin contract."""

from __future__ import annotations

from openshell.plugin.testing import IsolationLayerContract
from openshell_plugin_seccomp import SeccompLayer


class TestSeccompLayerContract(IsolationLayerContract):
    plugin_class = SeccompLayer


def test_filter_builds_and_covers_policy_list() -> None:
    # Building has no kernel side effects; loading is tested through the launcher
    # (openshell-core/tests/supervisor/test_launch_isolation.py).
    import tempfile

    from openshell_plugin_seccomp import build_filter

    f = build_filter()
    with tempfile.TemporaryFile() as out:
        f.export_pfc(out)
        out.seek(0)
        pfc = out.read().decode()
    for name in ("ptrace", "bpf", "mount", "unshare", "setns", "memfd_create", "io_uring_setup", "clone3", "socket", "clone"):
        assert f'"{name}"' in pfc, name
    assert "KILL" not in pfc.replace("KILL_PROCESS", "")  # never kill (bad-arch action is ERRNO too)
