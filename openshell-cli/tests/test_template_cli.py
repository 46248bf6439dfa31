"""``openshell template …`` and ``openshell sandbox create --template`` against a real
background gateway (local driver) on a free loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from openshell_cli.main import cli

POLICY = "version: 1\nnetwork_policies:\n  api: {endpoints: [{host: api.example.test, port: 443}], binaries: [{path: /usr/bin/curl}]}\n"


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def run_process(*args: str) -> subprocess.CompletedProcess:
    """The installed ``openshell`` in a child process (a real stdin for the command in the sandbox)."""
    exe = Path(sys.executable).with_name("openshell")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL, env=dict(os.environ))


@pytest.fixture
def gateway(tmp_path, monkeypatch, free_port, kill_gateways):
    """A running gateway under XDG dirs in tmp_path; killed at the end even on failure."""
    state_home = tmp_path / "state"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(state_home))
    monkeypatch.delenv("OPENSHELL_STATE_DIR", raising=False)
    monkeypatch.delenv("OPENSHELL_GATEWAY", raising=False)
    try:
        res = run("gateway", "start", "--port", str(free_port()))
        assert res.exit_code == 0, res.output
        yield state_home
    finally:
        run("sandbox", "delete", "--all")
        kill_gateways(state_home)


def test_template_create_list_get_delete(gateway, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    res = run("template", "create", "py", "--env", "GREETING=hello", "--memory", "256Mi", "--policy", str(policy), "--label", "team=x")
    assert res.exit_code == 0 and "template py created (version " in res.stderr, res.output
    run("template", "create", "img", "--image", "python:3.12")
    listed = json.loads(run("template", "list", "-o", "json").stdout)
    assert [(t["name"], t["image"], t["memory"]) for t in listed] == [("img", "python:3.12", ""), ("py", "", "256Mi")]
    assert [t["name"] for t in json.loads(run("template", "list", "--selector", "team=x", "-o", "json").stdout)] == ["py"]
    got = json.loads(run("template", "get", "py", "-o", "json").stdout)
    assert got["environment"] == {"GREETING": "hello"} and got["policy_yaml"] == POLICY
    assert "custom" in run("template", "get", "py").stdout

    res = run("template", "create", "bad", "--memory", "lots")
    assert res.exit_code == 2 and "--memory" in res.output
    res = run("template", "create", "py")
    assert res.exit_code == 1 and "sandbox template 'py' already exists" in res.stderr

    res = run("template", "delete", "py", "img")
    assert res.exit_code == 0 and "template py deleted" in res.stderr and "template img deleted" in res.stderr
    res = run("template", "get", "py")
    assert res.exit_code == 1 and "sandbox template 'py' not found in workspace 'default'" in res.stderr
    assert "did not exist" in run("template", "delete", "py", "--allow-missing").stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="a sandbox needs root")
def test_sandbox_create_from_template(gateway):
    assert run("template", "create", "py", "--env", "GREETING=hello", "--env", "WHO=template").exit_code == 0
    res = run_process("sandbox", "create", "--template", "py", "--env", "WHO=cli", "--no-keep", "--", "sh", "-c", "echo $GREETING $WHO")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1] == "hello cli"
    assert run("template", "create", "img", "--image", "python:3.12").exit_code == 0
    res = run_process("sandbox", "create", "--template", "img", "--", "true")
    assert res.returncode == 1 and "compute driver 'local' has no images" in res.stderr and "Traceback" not in res.stderr
    res = run_process("sandbox", "create", "--template", "nothing", "--", "true")
    assert res.returncode == 1 and "sandbox template 'nothing' not found" in res.stderr
