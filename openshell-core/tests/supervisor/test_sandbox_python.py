"""The read-only sandbox venv (``python`` + cloudpickle) leaves the host interpreter alone."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
from openshell.supervisor import sandbox_python as sp


def test_prepare_builds_a_venv_and_never_touches_the_host_interpreter(tmp_path):
    try:
        python = sp._find_python()
    except sp.SandboxPythonUnavailable:
        pytest.skip("no system python3")
    mode = os.stat(os.path.realpath(python)).st_mode
    first = sp.prepare_sandbox_python(tmp_path / "python")
    assert sp.prepare_sandbox_python(tmp_path / "python") == first  # a restarted supervisor rebuilds in place
    assert os.stat(os.path.realpath(python)).st_mode == mode
    assert os.readlink(first / "bin" / "python") == python
    for root, dirs, files in os.walk(first):
        for name in dirs + files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                assert stat.S_IMODE(os.stat(path).st_mode) in (0o755, 0o644), path
    proc = subprocess.run(
        [str(first / "bin" / "python"), "-c", "import cloudpickle, sys; print(sys.prefix, cloudpickle.loads(cloudpickle.dumps(lambda: 7))())"],
        capture_output=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.stdout.decode().split() == [str(first), "7"]


def test_the_version_comes_from_the_interpreter_name_without_running_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sp.subprocess, "run", lambda *a, **k: pytest.fail("ran the interpreter"))
    target = tmp_path / "python3.42"
    target.write_text("")
    link = tmp_path / "python3"
    link.symlink_to(target)
    assert sp._python_version(str(link)) == "3.42"
