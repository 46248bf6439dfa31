"""``--workspace`` on the CLI's sandbox, policy and provider commands: a sandbox in
another workspace is created, used, stopped, started and deleted there, and the
default workspace does not see it (real gateway, real sandbox)."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import OPENSHELL

pytestmark = pytest.mark.timeout(600)

WS = "cli-ws"


def test_sandbox_commands_address_the_workspace_option(gateway):
    gateway.cli("workspace", "create", WS, check=True)
    try:
        gateway.cli("sandbox", "create", "--workspace", WS, "--name", "wsb", check=True)
        listed = json.loads(gateway.cli("sandbox", "list", "--workspace", WS, "-o", "json", check=True).stdout)
        assert [s["name"] for s in listed] == ["wsb"]
        default = json.loads(gateway.cli("sandbox", "list", "-o", "json", check=True).stdout)
        assert "wsb" not in [s["name"] for s in default]
        missing = gateway.cli("sandbox", "exec", "wsb", "--", "true")
        assert missing.returncode == 1 and b"not found" in missing.stderr
        out = gateway.cli("sandbox", "exec", "--workspace", WS, "wsb", "--", "echo", "hi", check=True)
        assert out.stdout == b"hi\n"
        assert b"version" in gateway.cli("policy", "get", "--workspace", WS, "wsb", check=True).stdout
        block = gateway.cli("sandbox", "ssh-config", "--workspace", WS, "wsb", check=True).stdout.decode()
        assert f"--workspace {WS}" in block
        gateway.cli("sandbox", "stop", "--workspace", WS, "wsb", check=True)
        gateway.cli("sandbox", "start", "--workspace", WS, "wsb", check=True)
        env = dict(gateway.env, OPENSHELL_WORKSPACE=WS)
        again = subprocess.run([OPENSHELL, "sandbox", "exec", "wsb", "--", "echo", "back"], env=env, capture_output=True, timeout=120)
        assert again.returncode == 0 and again.stdout == b"back\n", again.stderr
        gateway.cli("sandbox", "delete", "--workspace", WS, "wsb", check=True)
    finally:
        gateway.cli("sandbox", "delete", "--workspace", WS, "wsb")
        gateway.cli("workspace", "delete", WS, check=True)
