"""``openshell gateway …`` against real background gateways on free loopback ports."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from openshell.client import config as client_config
from openshell.gateway.paths import GatewayPaths
from openshell.gateway.server import read_pid
from openshell_cli.main import cli


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def gwcli_env(tmp_path, monkeypatch, kill_gateways):
    """XDG config and state homes in tmp_path.

    Every gateway started under it is killed at the end, even when the test fails.
    """
    state_home = tmp_path / "state"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(state_home))
    monkeypatch.delenv("OPENSHELL_STATE_DIR", raising=False)
    monkeypatch.delenv("OPENSHELL_GATEWAY", raising=False)
    try:
        yield state_home
    finally:
        kill_gateways(state_home)


def run(*args: str, input: str | None = None):
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result


def state(state_home: Path, name: str = "openshell") -> GatewayPaths:
    return GatewayPaths(state_home / "openshell" / "gateways" / name)


def test_start_status_client_files_stop(gwcli_env, tmp_path, free_port):
    port = free_port()
    res = run("gateway", "start", "--port", str(port))
    assert res.exit_code == 0, res.output
    assert f"started at https://127.0.0.1:{port}" in res.output

    status = json.loads(run("gateway", "status", "-o", "json").output)
    assert status["status"] == "running" and status["healthy"] is True
    assert status["endpoint"] == f"https://127.0.0.1:{port}"
    assert status["pid"] == read_pid(state(gwcli_env))

    conf = tmp_path / "config" / "openshell"
    assert (conf / "active_gateway").read_text().strip() == "openshell"
    gdir = conf / "gateways" / "openshell"
    meta = json.loads((gdir / "metadata.json").read_text())
    assert meta["gateway_endpoint"] == f"https://127.0.0.1:{port}" and meta["auth_mode"] == "mtls"
    assert _mode(gdir / "mtls" / "tls.key") == 0o600
    assert _mode(gdir) == 0o700 and _mode(gdir / "mtls") == 0o700
    pki = state(gwcli_env).pki
    assert (gdir / "mtls" / "ca.crt").read_bytes() == (pki / "ca.crt").read_bytes()
    assert (gdir / "mtls" / "tls.crt").read_bytes() == (pki / "client.crt").read_bytes()
    cfg = client_config.load_gateway_config()
    assert cfg.target == f"127.0.0.1:{port}"

    res = run("gateway", "stop")
    assert res.exit_code == 0 and "stopped" in res.output
    status = json.loads(run("gateway", "status", "-o", "json").output)
    assert status["status"] == "stopped" and status["pid"] is None and status["healthy"] is False
    assert "is not running" in run("gateway", "stop").output


def test_start_twice_is_idempotent(gwcli_env, free_port):
    port = free_port()
    assert run("gateway", "start", "--port", str(port)).exit_code == 0
    pid = read_pid(state(gwcli_env))
    res = run("gateway", "start", "--port", str(port))
    assert res.exit_code == 0
    assert f"already running at https://127.0.0.1:{port} (pid {pid})" in res.output
    assert read_pid(state(gwcli_env)) == pid


def test_restart_without_flags_reuses_the_last_port(gwcli_env, free_port):
    port = free_port()
    assert run("gateway", "start", "--port", str(port)).exit_code == 0
    assert run("gateway", "stop").exit_code == 0
    res = run("gateway", "start")
    assert res.exit_code == 0 and f"127.0.0.1:{port}" in res.output


def test_busy_port_is_a_one_line_error_naming_port_and_flag(gwcli_env):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        res = run("gateway", "start", "--port", str(port))
    assert res.exit_code == 1
    assert res.output.strip() == f"error: port {port} on 127.0.0.1 is already in use; start the gateway on another port with 'openshell gateway start --port N'"
    assert read_pid(state(gwcli_env)) is None


def test_taken_default_port_falls_back_to_a_free_one_says_which_and_remembers_it(gwcli_env, free_port):
    port = free_port()
    assert run("gateway", "start", "--port", str(port)).exit_code == 0
    assert run("gateway", "stop").exit_code == 0
    with socket.socket() as holder:  # the remembered port (as 8080 would be) is now someone else's
        holder.bind(("127.0.0.1", port))
        holder.listen()
        res = CliRunner().invoke(cli, ["gateway", "start"], catch_exceptions=False)
        assert res.exit_code == 0, res.output + res.stderr
        chosen = state(gwcli_env)
        status = json.loads(run("gateway", "status", "-o", "json").output)
    new_port = int(status["endpoint"].rsplit(":", 1)[1])
    assert new_port != port
    assert f"port {port} on 127.0.0.1 is in use; gateway 'openshell' uses port {new_port} instead" in res.stderr
    assert f"started at https://127.0.0.1:{new_port}" in res.stdout
    assert json.loads(chosen.settings.read_text())["port"] == new_port
    assert run("gateway", "stop").exit_code == 0
    res = run("gateway", "start")  # remembered: the fallback port, not the old one
    assert res.exit_code == 0 and f"127.0.0.1:{new_port}" in res.output


def test_gateway_that_exits_early_reports_its_reason(gwcli_env, free_port):
    res = run("gateway", "start", "--port", str(free_port()), "--driver", "no-such-driver")
    assert res.exit_code == 1
    assert "failed to start" in res.output and "no-such-driver" in res.output


def test_list_select_info(gwcli_env, tmp_path, free_port):
    port = free_port()
    assert run("gateway", "start", "--port", str(port)).exit_code == 0
    ca = state(gwcli_env).pki / "ca.crt"
    client_config.write_gateway_config("remote", "https://10.0.0.9:8443", ca.read_bytes(), b"cert", b"key")

    rows = json.loads(run("gateway", "list", "-o", "json").output)
    assert rows == [
        {"active": True, "name": "openshell", "endpoint": f"https://127.0.0.1:{port}", "status": "running"},
        {"active": False, "name": "remote", "endpoint": "https://10.0.0.9:8443", "status": "remote"},
    ]
    table = run("gateway", "list").output
    assert all(len(line) <= 80 for line in table.splitlines())

    assert run("gateway", "select", "remote").output.strip() == "active gateway: remote"
    assert client_config.active_name() == "remote"
    res = run("gateway", "select", "nope")
    assert res.exit_code == 1 and "not configured" in res.output

    info = json.loads(run("gateway", "info", "--name", "openshell", "-o", "json").output)
    assert info["endpoint"] == f"https://127.0.0.1:{port}" and info["driver"] == "local"
    assert info["state_dir"] == str(state(gwcli_env).root)
    assert info["client_key"].endswith("gateways/openshell/mtls/tls.key")
    assert info["active"] is False


def test_gateway_env_var_overrides_active(gwcli_env, monkeypatch):
    ca = b"ca"
    client_config.write_gateway_config("a", "https://127.0.0.1:1", ca, b"c", b"k")
    client_config.write_gateway_config("b", "https://127.0.0.1:2", ca, b"c", b"k")
    client_config.set_active("a")
    assert client_config.load_gateway_config().name == "a"
    monkeypatch.setenv("OPENSHELL_GATEWAY", "b")
    assert client_config.load_gateway_config().endpoint == "https://127.0.0.1:2"


def test_no_gateway_configured_is_a_clear_error(gwcli_env):
    with pytest.raises(client_config.GatewayConfigError, match=r"no gateway configured; run 'openshell gateway start'"):
        client_config.load_gateway_config()


def test_destroy_stops_and_removes_state_and_client_files(gwcli_env, tmp_path, free_port):
    port = free_port()
    assert run("gateway", "start", "--port", str(port)).exit_code == 0
    root = state(gwcli_env).root
    (root / "sandboxes" / "leftover").mkdir()
    refused = run("gateway", "destroy", input="y\n")  # stdin is no terminal: --yes is needed, nothing happens
    assert refused.exit_code == 1 and "pass --yes" in refused.output, refused.output
    assert read_pid(state(gwcli_env)) is not None
    res = run("gateway", "destroy", "--yes")
    assert res.exit_code == 0, res.output
    assert not root.exists()
    assert not (tmp_path / "config" / "openshell" / "gateways" / "openshell").exists()
    assert not (tmp_path / "config" / "openshell" / "active_gateway").exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_ensure_local_gateway_starts_once_and_then_reuses(gwcli_env, free_port):
    from openshell_cli.commands.gateway import ensure_local_gateway, start_gateway

    port = free_port()
    # first start picks the port; ensure_local_gateway later reuses the saved settings
    start_gateway("openshell", port=port)
    assert run("gateway", "stop").exit_code == 0
    cfg = ensure_local_gateway()
    assert cfg.endpoint == f"https://127.0.0.1:{port}"
    pid = read_pid(state(gwcli_env))
    assert pid is not None
    assert ensure_local_gateway().endpoint == cfg.endpoint
    assert read_pid(state(gwcli_env)) == pid


def test_help_shows_examples():
    for args in (["gateway", "--help"], ["gateway", "start", "--help"], ["gateway", "status", "--help"]):
        out = run(*args).output
        assert "Example" in out and "openshell gateway" in out


def test_ensure_local_gateway_does_not_steal_the_active_gateway(gwcli_env, free_port):
    from openshell_cli.commands.gateway import ensure_local_gateway, start_gateway

    client_config.write_gateway_config("remote", "https://127.0.0.1:1", b"ca", b"c", b"k")
    client_config.set_active("remote")
    assert ensure_local_gateway("remote").name == "remote"  # not local: returned as is, not started
    assert read_pid(state(gwcli_env, "remote")) is None
    port = free_port()
    start_gateway("local1", port=port, activate=False)
    run("gateway", "stop", "--name", "local1")
    assert ensure_local_gateway("local1").endpoint == f"https://127.0.0.1:{port}"
    assert read_pid(state(gwcli_env, "local1")) is not None
    assert client_config.active_name() == "remote"


def test_status_of_a_remote_gateway_probes_it(gwcli_env, free_port):
    client_config.write_gateway_config("remote", f"https://127.0.0.1:{free_port()}", b"ca", b"c", b"k")
    status = json.loads(run("gateway", "status", "--name", "remote", "-o", "json").output)
    assert status["status"] == "remote" and status["healthy"] is False and status["pid"] is None


def test_ctrl_c_while_the_gateway_starts_leaves_no_gateway_running(gwcli_env, free_port):
    import os
    import signal
    import subprocess
    import sys
    import time

    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "openshell"), "gateway", "start", "ctrlc", "--port", str(port)],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    paths = state(gwcli_env, "ctrlc")
    deadline = time.monotonic() + 60
    from openshell_cli.commands.gateway import running_pid

    while running_pid(paths) is None and time.monotonic() < deadline:  # the gateway process runs
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err, err
    if proc.returncode == 0:
        pytest.skip("the gateway was ready before the interrupt arrived")
    assert proc.returncode == 130, err
    assert running_pid(paths) is None  # not left running where `gateway list` would not show it
    assert port_free_now(port)


def port_free_now(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_gateway_add_connects_to_a_gateway_it_did_not_start(gwcli_env, tmp_path, free_port):
    """`gateway add` with PEM files, and with a client Secret read by kubectl (a stand-in
    script here; the real kubectl and Secret are in tests/k8s), reaches a running gateway."""
    import base64
    import os

    port = free_port()
    assert run("gateway", "start", "--name", "origin", "--port", str(port)).exit_code == 0
    mtls = tmp_path / "config" / "openshell" / "gateways" / "origin" / "mtls"
    endpoint = f"https://127.0.0.1:{port}"

    res = run(
        "gateway",
        "add",
        "lab",
        "--endpoint",
        endpoint,
        "--ca",
        str(mtls / "ca.crt"),
        "--cert",
        str(mtls / "tls.crt"),
        "--key",
        str(mtls / "tls.key"),
        "-o",
        "json",
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["healthy"] is True
    assert _mode(tmp_path / "config" / "openshell" / "gateways" / "lab" / "mtls" / "tls.key") == 0o600

    secret = {
        "data": {k: base64.b64encode((mtls / f).read_bytes()).decode() for k, f in (("ca.crt", "ca.crt"), ("client.crt", "tls.crt"), ("client.key", "tls.key"))}
    }
    (tmp_path / "secret.json").write_text(json.dumps(secret))
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\ncat {tmp_path}/secret.json\n')
    kubectl.chmod(0o755)
    res = run("gateway", "add", "k8s", "--endpoint", endpoint, "--from-secret", "ns1/gw-openshell-client", "--kubectl", str(kubectl), "--select", "-o", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"name": "k8s", "endpoint": endpoint, "healthy": True, "active": True}
    assert (tmp_path / "argv").read_text().split() == ["get", "secret", "gw-openshell-client", "-n", "ns1", "-o", "json"]
    assert json.loads(run("sandbox", "list", "-o", "json").output) == []

    # mistakes name the option and the fix; nothing is overwritten without --force
    res = run("gateway", "add", "k8s", "--endpoint", endpoint, "--from-secret", "ns1/x", "--kubectl", str(kubectl))
    assert res.exit_code != 0 and "--force" in res.output
    res = run("gateway", "add", "origin", "--force", "--endpoint", endpoint, "--from-secret", "ns1/x", "--kubectl", str(kubectl))
    assert res.exit_code != 0 and "started on this machine" in res.output
    for argv, needle in (
        (["--endpoint", "http://x:1", "--from-secret", "a/b"], "https://HOST:PORT"),
        (["--endpoint", endpoint, "--from-secret", "nons"], "NAMESPACE/NAME"),
        (["--endpoint", endpoint], "--from-secret NAMESPACE/NAME"),
        (["--endpoint", endpoint, "--from-secret", "a/b", "--kubectl", "/nonexistent/kubectl"], "kubectl"),
    ):
        res = run("gateway", "add", "other", *argv)
        assert res.exit_code != 0 and needle in res.output, res.output
    secret["data"].pop("client.key")
    (tmp_path / "secret.json").write_text(json.dumps(secret))
    res = run("gateway", "add", "other", "--endpoint", endpoint, "--from-secret", "a/b", "--kubectl", str(kubectl))
    assert res.exit_code != 0 and "lacks client.key" in res.output
    assert "other" not in os.listdir(tmp_path / "config" / "openshell" / "gateways")


def test_a_dockerfile_is_not_built_for_a_gateway_that_runs_elsewhere(gwcli_env, tmp_path):
    """`--from ./dir` builds in this machine's docker engine: refused for a gateway added
    with `gateway add` (e.g. in a cluster), whose nodes would never see that image."""
    client_config.write_gateway_config("far", "https://127.0.0.1:9", b"ca", b"cert", b"key")
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text("FROM scratch\n")
    res = run("sandbox", "create", "--gateway", "far", "--from", str(tmp_path / "img"), "--detach")
    assert res.exit_code != 0
    assert "gateway 'far' runs elsewhere" in res.output and "pass its reference" in res.output
