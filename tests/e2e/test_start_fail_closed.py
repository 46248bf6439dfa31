"""The faster supervisor start still fails closed.

The supervisor now loads only the isolation layers and the policy engine it
uses (``loader.select``) and prepares the layers in a thread while other start
steps run. A layer it cannot load must still stop the sandbox with ERROR and
the reason, and leave no network namespace behind.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest
from conftest import _start_gateway, require_root  # tests/ is on sys.path (conftest)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def gateway_without_seccomp(tmp_path, monkeypatch):
    require_root()
    monkeypatch.setenv("OPENSHELL_DISABLE_PLUGINS", "isolation:seccomp")
    gw = _start_gateway(tmp_path, f"fc{uuid.uuid4().hex[:6]}")
    try:
        yield gw
    finally:
        gw.cli("sandbox", "delete", "--all", timeout=120)
        gw.cli("gateway", "stop", "--name", gw.name, timeout=60)


def test_missing_isolation_layer_reports_error_with_reason(gateway_without_seccomp) -> None:
    gw = gateway_without_seccomp
    before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    proc = gw.cli("sandbox", "create", "--name", "fc", "--", "true", timeout=120)
    assert proc.returncode != 0
    out = gw.cli("sandbox", "get", "fc", "-o", "json", check=True).stdout.decode()
    assert '"ERROR"' in out and "seccomp" in out and "OPENSHELL_DISABLE_PLUGINS" in out, out
    after = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    new = {line.split()[0] for line in after.splitlines()} - {line.split()[0] for line in before.splitlines()}
    assert not [n for n in new if n.startswith("osb-")], new
