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


def test_delete_all_asks_on_a_terminal_and_touches_only_the_workspace(gateway):
    import pexpect

    ws = "cli-ws-all"
    gateway.cli("workspace", "create", ws, check=True)
    try:
        for n in ("del-a", "del-b"):
            gateway.cli("sandbox", "create", "--workspace", ws, "--name", n, "--detach", check=True)

        def names() -> list[str]:
            return sorted(s["name"] for s in json.loads(gateway.cli("sandbox", "list", "--workspace", ws, "-o", "json", check=True).stdout))

        child = pexpect.spawn(OPENSHELL, ["sandbox", "delete", "--all", "--workspace", ws], env=gateway.env, timeout=60)
        child.expect(r"Delete 2 sandboxes \(del-a, del-b\) and their workdirs\? \[y/N\]")
        child.sendline("n")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 1 and names() == ["del-a", "del-b"]

        child = pexpect.spawn(OPENSHELL, ["sandbox", "delete", "--all", "--workspace", ws], env=gateway.env, timeout=120)
        child.expect(r"\[y/N\]")
        child.sendline("y")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0 and names() == []
        # a script (stdin not a terminal) is not asked
        gateway.cli("sandbox", "create", "--workspace", ws, "--name", "del-c", "--detach", check=True)
        out = gateway.cli("sandbox", "delete", "--all", "--workspace", ws, check=True)
        assert out.stdout == b"deleted del-c\n" and names() == []
        assert gateway.cli("sandbox", "delete", "--all", "--workspace", ws, check=True).stdout == b"no sandboxes to delete\n"
    finally:
        for n in ("del-a", "del-b", "del-c"):
            gateway.cli("sandbox", "delete", "--workspace", ws, n)
        gateway.cli("workspace", "delete", ws, check=True)
