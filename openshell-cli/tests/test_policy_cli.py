"""``openshell policy validate|default|explain``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from openshell.policy import default_policy, parse_policy
from openshell_cli.commands import policy as policy_cmd
from openshell_cli.main import cli

POLICY = """\
version: 1
network_policies:
  repos:
    endpoints:
      - host: api.example.test
        port: 8080
        protocol: rest
        rules:
          - allow: {method: GET, path: "/repos/**", query: {per_page: "1*"}}
    binaries: [{path: /usr/bin/curl}]
  wild:
    endpoints: [{host: "*.corp.test", port: 443}]
    binaries: [{path: "/**"}]
"""


@pytest.fixture
def policy_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return str(path)


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_validate_prints_valid(policy_file):
    result = run("policy", "validate", policy_file)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "valid"


def test_validate_warns_about_endpoints_the_proxy_always_refuses(tmp_path):
    doc = tmp_path / "loop.yaml"
    doc.write_text(
        "version: 1\nnetwork_policies:\n  dev:\n    endpoints:\n"
        "      - {host: api.example.test, port: 443}\n      - {host: 127.0.0.1, port: 8000}\n      - {host: localhost, port: 11434}\n"
        "    binaries: [{path: /usr/bin/curl}]\n"
    )
    result = run("policy", "validate", str(doc))
    assert result.exit_code == 0 and result.stdout.strip() == "valid"
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 2, result.stderr
    assert warnings[0].startswith("warning: network_policies.dev.endpoints[1].host: 127.0.0.1 is loopback, which the proxy always refuses")
    assert warnings[1].startswith("warning: network_policies.dev.endpoints[2].host: localhost is loopback")


def test_validate_prints_every_error_with_its_field_and_exits_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nbogus: 1\nprocess: {run_as_user: root}\n")
    result = run("policy", "validate", str(bad))
    assert result.exit_code == 1
    assert "error: bogus: unknown key" in result.stderr
    assert "error: process.run_as_user:" in result.stderr


def test_validate_reports_the_yaml_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\n  x: [\n")
    result = run("policy", "validate", str(bad))
    assert result.exit_code == 1 and "line 2" in result.stderr


def test_validate_missing_file_is_a_one_line_error(tmp_path):
    result = run("policy", "validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1 and "cannot read" in result.stderr


def test_default_prints_the_default_policy():
    result = run("policy", "default")
    assert result.exit_code == 0
    assert parse_policy(result.stdout) == default_policy()


def test_explain_connection_allowed_json(policy_file):
    result = run(
        "policy",
        "explain",
        "--policy",
        policy_file,
        "--binary",
        "/usr/bin/curl",
        "--host",
        "API.example.test",
        "--port",
        "8080",
        "--resolved",
        "10.199.0.2",
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["decision"] == "allow" and out["policy"] == "repos" and out["error"] is None
    assert out["addresses"] == ["10.199.0.2"]


def test_explain_binary_denial(policy_file):
    result = run("policy", "explain", "--policy", policy_file, "--binary", "/usr/bin/wget", "--host", "api.example.test", "--port", "8080", "-o", "json")
    out = json.loads(result.stdout)
    assert out["decision"] == "deny" and out["error"] == "policy_denied"
    assert "readlink -f /usr/bin/wget" in out["reason"]


def test_explain_ssrf_denial(policy_file):
    result = run(
        "policy",
        "explain",
        "--policy",
        policy_file,
        "--binary",
        "/usr/bin/curl",
        "--host",
        "api.corp.test",
        "--port",
        "443",
        "--resolved",
        "10.1.2.3",
        "-o",
        "json",
    )
    out = json.loads(result.stdout)
    assert out["decision"] == "deny" and out["error"] == "ssrf_denied"


def test_explain_http_request(policy_file):
    base = [
        "policy",
        "explain",
        "--policy",
        policy_file,
        "--binary",
        "/usr/bin/curl",
        "--host",
        "api.example.test",
        "--port",
        "8080",
        "--resolved",
        "10.199.0.2",
        "-o",
        "json",
    ]
    ok = json.loads(run(*base, "--method", "GET", "--path", "/repos/a?per_page=10").stdout)
    assert ok["decision"] == "allow" and ok["layer"] == "l7"
    bad = json.loads(run(*base, "--method", "DELETE", "--path", "/repos/a").stdout)
    assert bad["decision"] == "deny" and "DELETE /repos/a" in bad["reason"] and bad["policy"] == "repos"
    q = json.loads(run(*base, "--method", "GET", "--path", "/repos/a?per_page=x").stdout)
    assert q["decision"] == "deny"


def test_explain_table_output(policy_file):
    result = run("policy", "explain", "--policy", policy_file, "--binary", "/usr/bin/curl", "--host", "api.example.test", "--port", "8080")
    assert result.exit_code == 0
    assert "decision:" in result.stdout and "allow" in result.stdout
    assert "destination safety not checked" in result.stdout


def test_explain_method_without_path_is_a_usage_error(policy_file):
    result = run("policy", "explain", "--policy", policy_file, "--binary", "/b", "--host", "h.example.test", "--port", "1", "--method", "GET")
    assert result.exit_code == 2


def test_explain_invalid_policy_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n")
    result = run("policy", "explain", "--policy", str(bad), "--binary", "/b", "--host", "h.example.test", "--port", "1")
    assert result.exit_code == 1 and "version" in result.stderr


def test_engine_comes_from_the_plugin_registry():
    from openshell_plugin_opa import OpaEngine

    assert policy_cmd._engine_class() is OpaEngine


def test_help_texts_have_examples():
    for args in (["policy", "--help"], ["policy", "validate", "--help"], ["policy", "default", "--help"], ["policy", "explain", "--help"]):
        result = run(*args)
        assert result.exit_code == 0 and "Example" in result.stdout


# --------------------------------------------------------------------------- set / get / list / explain NAME
# (Against a running sandbox: tests/e2e/test_policy_reload.py.)


@pytest.fixture
def gateway_env(tmp_path, monkeypatch):
    """A real gateway on a free loopback port, client files under tmp_path; killed at the end."""
    import os
    import signal
    import socket

    from openshell.gateway.paths import GatewayPaths
    from openshell.gateway.server import read_pid

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("OPENSHELL_STATE_DIR", raising=False)
    monkeypatch.delenv("OPENSHELL_GATEWAY", raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        result = run("gateway", "start", "--name", "rlpol", "--port", str(port))
        assert result.exit_code == 0, result.output
        yield
    finally:
        root = GatewayPaths(tmp_path / "state" / "openshell" / "gateways" / "rlpol")
        pid = read_pid(root)
        if pid:
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("verb", ["set", "get", "list"])
def test_gateway_verbs_have_help_with_an_example(verb):
    result = run("policy", verb, "--help")
    assert result.exit_code == 0 and "Example" in result.stdout and f"openshell policy {verb} demo" in result.stdout


def test_explain_needs_exactly_one_of_name_and_policy(policy_file):
    args = ("--binary", "/usr/bin/curl", "--host", "a.test", "--port", "80")
    neither = run("policy", "explain", *args)
    both = run("policy", "explain", "demo", "--policy", policy_file, *args)
    assert neither.exit_code == 2 and both.exit_code == 2
    assert "name a sandbox" in neither.stderr and "name a sandbox" in both.stderr


def test_set_checks_the_file_before_asking_the_gateway(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nnetwork_policies:\n  x: {endpoints: [{host: a.test, port: 0}], binaries: []}\n")
    result = run("policy", "set", "demo", "--policy", str(bad), "--gateway", "no-such-gateway")
    assert result.exit_code == 1
    assert "network_policies.x.endpoints[0].port" in result.stderr and "no-such-gateway" not in result.stderr


def test_policy_commands_against_a_gateway_name_a_missing_sandbox(gateway_env, policy_file):
    for args in (
        ("get", "nope"),
        ("list", "nope"),
        ("set", "nope", "--policy", policy_file),
        ("explain", "nope", "--binary", "/usr/bin/curl", "--host", "a.test", "--port", "80"),
    ):
        result = run("policy", *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.strip() == "error: sandbox 'nope' not found; see 'openshell sandbox list'", args


def test_set_timeout_without_wait_is_a_usage_error(policy_file):
    result = run("policy", "set", "demo", "--policy", policy_file, "--timeout", "5")
    assert result.exit_code == 2 and "--timeout goes with --wait" in result.stderr


@pytest.mark.parametrize("argv", [["policy", "validate", "/dev/zero"], ["sandbox", "create", "--no-keep", "--policy", "/dev/zero", "--", "true"]])
def test_an_endless_policy_file_is_refused_after_the_size_limit(argv):
    # Read no further than the limit: /dev/zero (or a huge file) must not fill memory.
    res = CliRunner().invoke(cli, argv)
    assert res.exit_code != 0
    assert "larger than 1048576 bytes" in res.output, res.output


@pytest.mark.parametrize("argv", [["sandbox", "create", "--timeout", "-5", "--", "true"], ["sandbox", "start", "x", "--timeout", "0"]])
def test_a_timeout_that_is_not_positive_is_refused_before_anything_is_made(argv):
    res = CliRunner().invoke(cli, argv)
    assert res.exit_code == 2 and "--timeout" in res.output, res.output


def test_an_unreachable_gateway_hint_names_the_gateway_to_start():
    import grpc
    from openshell.client.errors import error_from_rpc

    class Down(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

        def details(self):
            return "connection refused"

        def trailing_metadata(self):
            return ()

    err = error_from_rpc(Down(), gateway="gateway 'nu'", endpoint="https://127.0.0.1:1")
    assert "start it with 'openshell gateway start nu'" in str(err)
