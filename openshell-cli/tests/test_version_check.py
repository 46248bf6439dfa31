"""The gateway/CLI version warning against a real background gateway on a free loopback port.

The gateway reports its real version; the mismatch is simulated on the CLI's
side (``openshell.client.versions.installed_version`` monkeypatched in this
process), so no hook exists in the gateway or in anything a sandbox can reach.
"""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from openshell.client import versions
from openshell.client.sdk import OpenShellClient
from openshell_cli import version_check
from openshell_cli.main import cli

pytestmark = pytest.mark.timeout(120)

GATEWAY_VERSION = versions.installed_version()  # what the gateway we start reports
FIX = "openshell gateway stop && openshell gateway start"


@pytest.fixture(scope="module")
def gateway_env(tmp_path_factory, free_port, kill_gateways):
    """A running local gateway ``openshell``; yields its XDG environment. Killed at the end."""
    base = tmp_path_factory.mktemp("vcheck")
    env = {"XDG_CONFIG_HOME": str(base / "config"), "XDG_STATE_HOME": str(base / "state")}
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    mp.delenv("OPENSHELL_STATE_DIR", raising=False)
    mp.delenv("OPENSHELL_GATEWAY", raising=False)
    mp.delenv(version_check.SILENCE_ENV, raising=False)
    try:
        res = CliRunner().invoke(cli, ["gateway", "start", "--port", str(free_port())], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        yield env
    finally:
        kill_gateways(base / "state")
        mp.undo()


@pytest.fixture
def invoke(gateway_env, monkeypatch):
    """Run the CLI in-process as a fresh invocation (the once-per-process flag reset)."""

    def run(*args: str):
        monkeypatch.setattr(version_check, "_warned", False)
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return run


def _cli_version(monkeypatch, version: str) -> None:
    monkeypatch.setattr(versions, "installed_version", lambda: version)


def _warnings(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("warning:") and "OpenShell" in ln]


def test_same_version_no_warning(invoke):
    res = invoke("sandbox", "list")
    assert res.exit_code == 0, res.output
    assert _warnings(res.stderr) == [] and _warnings(res.stdout) == []
    status = json.loads(invoke("gateway", "status", "-o", "json").stdout)
    assert status["gateway_version"] == status["cli_version"] == GATEWAY_VERSION


def test_older_gateway_warns_once_on_stderr_without_extra_call(invoke, monkeypatch):
    _cli_version(monkeypatch, "99.1.0")
    # the version must come from the list answer's metadata, not from a Health call
    monkeypatch.setattr(OpenShellClient, "health", lambda self: pytest.fail("extra Health round trip"))
    res = invoke("sandbox", "list", "-o", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == []  # stdout stays parseable
    (line,) = _warnings(res.stderr)
    assert f"runs OpenShell {GATEWAY_VERSION}" in line and "this CLI is 99.1.0" in line
    assert FIX in line and version_check.SILENCE_ENV in line


def test_several_calls_one_warning(invoke, monkeypatch):
    _cli_version(monkeypatch, "99.1.0")
    # `provider list` and `sandbox list` in one process: two clients, still one line
    monkeypatch.setattr(version_check, "_warned", False)
    runner = CliRunner()
    first = runner.invoke(cli, ["sandbox", "list"], catch_exceptions=False)
    second = runner.invoke(cli, ["provider", "list"], catch_exceptions=False)
    assert len(_warnings(first.stderr)) + len(_warnings(second.stderr)) == 1


def test_status_shows_both_versions_and_warns(invoke, monkeypatch):
    _cli_version(monkeypatch, "99.1.0")
    res = invoke("gateway", "status", "-o", "json")
    status = json.loads(res.stdout)
    assert status["cli_version"] == "99.1.0" and status["gateway_version"] == GATEWAY_VERSION
    assert len(_warnings(res.stderr)) == 1
    table = invoke("gateway", "status")
    assert f"{GATEWAY_VERSION} (cli 99.1.0)" in table.stdout and len(_warnings(table.stderr)) == 1


def test_already_running_start_warns(invoke, monkeypatch):
    _cli_version(monkeypatch, "99.1.0")
    res = invoke("gateway", "start")
    assert "already running" in res.stdout and len(_warnings(res.stderr)) == 1


def test_newer_gateway_names_cli_upgrade(invoke, monkeypatch):
    _cli_version(monkeypatch, "0.0.1")
    (line,) = _warnings(invoke("sandbox", "list").stderr)
    assert "upgrade this CLI" in line


def test_warning_line_policy(monkeypatch):
    _cli_version(monkeypatch, "0.3.1")
    assert version_check.warning_line("0.3.2", "openshell", True) is None  # newer by a patch: fine
    assert version_check.warning_line("0.3.1", "openshell", True) is None
    assert version_check.warning_line("", "openshell", True) is None  # unknown: no guess
    assert "openshell gateway stop --name dev && openshell gateway start --name dev" in version_check.warning_line("0.3.0", "dev", True)
    remote = version_check.warning_line("0.2.9", "corp", False, "https://10.0.0.9:8443")
    assert "at https://10.0.0.9:8443" in remote and "upgrade the gateway" in remote and "gateway stop" not in remote


def test_silenced(invoke, monkeypatch):
    _cli_version(monkeypatch, "99.1.0")
    monkeypatch.setenv(version_check.SILENCE_ENV, "1")
    for args in (("sandbox", "list"), ("gateway", "status"), ("gateway", "start")):
        res = invoke(*args)
        assert _warnings(res.stderr) == [] and _warnings(res.stdout) == [], args


def test_real_process_streams(gateway_env):
    """A whole `openshell` process (entry point `main`), the CLI's version patched before it runs."""
    import subprocess
    import sys

    code = "import sys, openshell.client.versions as v; v.installed_version = lambda: '99.1.0'; from openshell_cli.main import main; main(sys.argv[1:])"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENSHELL_STATE_DIR", "OPENSHELL_GATEWAY", version_check.SILENCE_ENV)}
    env.update(gateway_env)
    proc = subprocess.run([sys.executable, "-c", code, "sandbox", "list", "-o", "json"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [] and len(_warnings(proc.stderr)) == 1
    env[version_check.SILENCE_ENV] = "1"
    proc = subprocess.run([sys.executable, "-c", code, "sandbox", "list", "-o", "json"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and _warnings(proc.stderr) == []
