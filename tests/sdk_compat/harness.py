"""Harness of the SDK compatibility suite: the published OpenShell Python SDK
(``openshell==0.1.5``) against our gateway.

The SDK's import package is also called ``openshell``, so it lives in its own
venv (built once, kept under ``.nox/``) and each check runs a small script
there. The gateway and its client files come from our CLI
(``openshell gateway start``, the session ``gateway`` fixture of conftest.py);
the SDK finds them exactly as a user's would: ``$XDG_CONFIG_HOME`` and
``$OPENSHELL_GATEWAY``. See docs/sdk-compat.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import venv
from pathlib import Path

import pytest

SDK_VERSION = "0.1.5"
REPO = Path(__file__).resolve().parents[2]
SDK_VENV = Path(os.environ.get("OPENSHELL_SDK_VENV", REPO / ".nox" / f"sdk-compat-{SDK_VERSION}"))


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """Python of a venv with ``openshell==0.1.5`` (and nothing of ours) installed."""
    py = SDK_VENV / "bin" / "python"
    check = [str(py), "-c", f"import importlib.metadata as m; assert m.version('openshell') == '{SDK_VERSION}'"]
    if not py.exists() or subprocess.run(check, capture_output=True, check=False).returncode != 0:
        venv.EnvBuilder(with_pip=True, clear=True).create(SDK_VENV)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"openshell=={SDK_VERSION}"],
            check=True,
            timeout=600,
        )
    return py


def run_sdk(py: Path, script: str, env: dict | None = None, timeout: float = 300) -> dict:
    """Run ``script`` with the SDK venv's python; it prints one JSON object last."""
    clean = {k: v for k, v in (env or os.environ).items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    proc = subprocess.run([str(py), "-c", textwrap.dedent(script)], env=clean, capture_output=True, timeout=timeout, cwd="/", check=False)
    assert proc.returncode == 0, f"SDK script failed ({proc.returncode}):\n{proc.stdout.decode()}\n{proc.stderr.decode()}"
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


@pytest.fixture(scope="session")
def sdk(sdk_python: Path):
    """``sdk(script, env=None, timeout=300) -> dict``: run a script in the SDK's venv
    (see :func:`run_sdk`); the script prints one JSON object last."""

    def run(script: str, env: dict | None = None, timeout: float = 300) -> dict:
        return run_sdk(sdk_python, script, env=env, timeout=timeout)

    return run
