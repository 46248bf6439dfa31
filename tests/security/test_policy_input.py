"""Policy input cannot exhaust memory or surprise the reader.

Unit tests of the policy loader (YAML 1.2 core, no anchors/aliases, depth and
size caps, control characters, uid/gid ranges, bounded one-line errors), then
the same attacks sent to a real gateway through the client SDK: each is a
clean INVALID_ARGUMENT naming the field, the gateway's memory stays bounded
and it keeps answering.

Local driver only: the CLI and the gateway parse and refuse policy input before
any compute driver (or supervisor) sees it, so the driver changes nothing here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import OPENSHELL, write_policy  # noqa: E402 - tests/ is on sys.path (conftest)
from openshell.policy import PolicyError, parse_policy
from openshell.policy.errors import MAX_ERRORS
from openshell.policy.yamlio import MAX_DEPTH, MAX_DOCUMENT_BYTES

pytestmark = pytest.mark.timeout(300)

#: ~600 bytes that stand for 9**9 strings once expanded (the reported attack)
ALIAS_BOMB = textwrap.dedent(
    """\
    version: 1
    network_policies:
      bomb:
        endpoints:
          - host: bomb.test
            port: 443
            allowed_ips: &a9 [&a8 [&a7 [&a6 [&a5 [&a4 [&a3 [&a2 [&a1 ["10.199.0.2","10.199.0.2","10.199.0.2","10.199.0.2","10.199.0.2","10.199.0.2","10.199.0.2","10.199.0.2","10.199.0.2"]]]]]]]]]
        binaries: [{path: /usr/bin/curl}]
    """
)
# The classic shape: each level lists the previous one nine times by alias.
LAUGHS = "version: 1\nnetwork_policies:\n  bomb:\n    endpoints:\n      - host: bomb.test\n        port: 443\n        allowed_ips:\n"
LAUGHS += '          - &l0 ["10.199.0.2","10.199.0.2","10.199.0.2","10.199.0.2","10.199.0.2","10.199.0.2","10.199.0.2","10.199.0.2","10.199.0.2"]\n'
for _i in range(1, 9):
    LAUGHS += f"          - &l{_i} [" + ",".join([f"*l{_i - 1}"] * 9) + "]\n"
LAUGHS += "    binaries: [{path: /usr/bin/curl}]\n"

DEEP_NEST = (
    "version: 1\nnetwork_policies:\n  deep:\n    endpoints:\n      - host: deep.test\n        port: 443\n        allowed_ips: " + "[" * 5000 + "]" * 5000 + "\n"
)

VALID_NET = "version: 1\nnetwork_policies:\n  w:\n    endpoints: [{host: w.test, port: %s}]\n    binaries: [{path: /usr/bin/curl}]\n"


def refused(doc) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(doc)
    err = info.value
    for e in [err, *err.errors]:
        text = str(e)
        assert "\n" not in text and len(text) < 800, text[:2000]
    return err


# ---------------------------------------------------------------- loader unit tests


@pytest.mark.parametrize("doc", [ALIAS_BOMB, LAUGHS], ids=["nested-anchors", "billion-laughs"])
def test_alias_bomb_is_one_line_naming_the_field(doc):
    assert len(doc) < 1200
    err = refused(doc)
    assert err.field.startswith("network_policies.bomb.endpoints[0].allowed_ips")
    assert "anchors" in err.message or "aliases" in err.message


def test_alias_alone_is_refused():
    err = refused("version: 1\nnetwork_policies:\n  a: {endpoints: [], binaries: []}\n  b: *x\n")
    # an alias to an undefined anchor is a YAML error; either way one line, named
    assert err.field in ("network_policies.b", "document")


def test_deep_nesting_names_the_field_not_recursion():
    err = refused(DEEP_NEST)
    assert "recursion" not in str(err)
    assert err.field.startswith("network_policies.deep.endpoints[0].allowed_ips[0]")
    assert f"deeper than {MAX_DEPTH}" in err.message


def test_deep_block_mappings_are_capped_too():
    doc = "version: 1\n" + "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v: 1\n"
    err = refused(doc)
    assert err.field.startswith("k0.k1.k2") and "deeper" in err.message


def test_size_is_capped_before_parsing():
    doc = "version: 1\n#" + "x" * MAX_DOCUMENT_BYTES + "\n"
    err = refused(doc)
    assert err.field == "document" and str(MAX_DOCUMENT_BYTES) in err.message
    err = refused(doc.encode())
    assert err.field == "document"
    # characters below the cap that are more bytes than it
    err = refused("version: 1\n#" + "é" * (MAX_DOCUMENT_BYTES // 2 + 10))
    assert err.field == "document"


def test_nul_byte_is_one_line_with_the_field():
    err = refused(VALID_NET % 443 + 'process: {run_as_user: "sand\0box"}\n')
    assert err.field == "process.run_as_user"
    assert "U+0000" in err.message and "line 6" in err.message


@pytest.mark.parametrize("char", ["\x01", "\x1b", "\x7f", "\x85"])
def test_escaped_control_characters_in_values_and_keys(char):
    escaped = json.dumps(char)  # "\u0001" etc.: passes the reader, must fail validation
    err = refused(f"version: 1\nnetwork_policies:\n  w:\n    name: {escaped}\n    endpoints: []\n    binaries: []\n")
    assert err.field == "network_policies.w.name" and "control character" in err.message
    err = refused(f"version: 1\nnetwork_policies:\n  {escaped}: {{endpoints: [], binaries: []}}\n")
    assert err.field.startswith("network_policies.") and "control character" in err.message


def test_base60_port_is_a_string_and_refused():
    err = refused(VALID_NET % "7:23")
    assert err.field == "network_policies.w.endpoints[0].port"
    assert "7:23" in err.message


@pytest.mark.parametrize(
    ("text", "port"),
    [("443", 443), ("0443", 443), ("0o673", 443), ("0x1BB", 443), ("+443", 443)],
)
def test_yaml_12_core_integers(text, port):
    assert parse_policy(VALID_NET % text).network[0].endpoints[0].ports == (port,)


@pytest.mark.parametrize("text", ["1_000", "!!int 7:23", "!!float 1:2", "yes", "443.0", "0b1"])
def test_yaml_11_numbers_are_not_numbers(text):
    err = refused(VALID_NET % text)
    assert err.field in ("network_policies.w.endpoints[0].port", "document")


def test_yaml_11_booleans_are_strings():
    err = refused("version: 1\nfilesystem_policy: {include_workdir: yes}\n")
    assert err.field == "filesystem_policy.include_workdir"
    assert parse_policy("version: 1\nfilesystem_policy: {include_workdir: True}\n").filesystem.include_workdir


def test_merge_keys_and_foreign_tags_are_refused():
    err = refused("version: 1\n<<: {process: {run_as_user: 1000}}\n")
    assert err.field == "<<"
    err = refused("version: 1\nprocess: !!python/object:os.system {}\n")
    assert err.field == "process" and "tag" in err.message
    err = refused("version: 1\nprocess: {run_as_user: !!binary aGVsbG8=}\n")
    assert err.field == "process.run_as_user"


def test_duplicate_keys_name_the_field():
    err = refused("version: 1\nprocess:\n  run_as_user: 1000\n  run_as_user: 0\n")
    assert err.field == "process.run_as_user" and "duplicate" in err.message


@pytest.mark.parametrize("value", ["4294967295", "4294967296", "99999999999999999999", "0", "-1", "00"])
@pytest.mark.parametrize("key", ["run_as_user", "run_as_group"])
def test_uid_gid_out_of_range_refused_at_validation(key, value):
    for doc in (f"version: 1\nprocess: {{{key}: {value}}}\n", f'version: 1\nprocess: {{{key}: "{value}"}}\n'):
        err = refused(doc)
        assert err.field == f"process.{key}" and "4294967294" in err.message


@pytest.mark.parametrize("value", ["1", "65534", "4294967294"])
def test_uid_in_range_accepted(value):
    assert parse_policy(f"version: 1\nprocess: {{run_as_user: {value}}}\n").process.run_as_user == value


def test_errors_are_bounded_however_big_the_input():
    huge = "x" * 500_000
    err = refused(f"version: 1\nnetwork_policies:\n  w:\n    endpoints: [{{host: a.test, port: {huge}}}]\n    binaries: []\n")
    assert err.field == "network_policies.w.endpoints[0].port"
    many = (
        "version: 1\nnetwork_policies:\n  w:\n    endpoints: [{host: a.test, port: 443, allowed_ips: [" + ",".join(["bad"] * 20000) + "]}]\n    binaries: []\n"
    )
    err = refused(many)
    assert len(err.errors) <= MAX_ERRORS
    long_key = "k" * 100_000
    err = refused(f"version: 1\n{long_key}: 1\n")
    assert len(err.field) < 300


def test_every_document_error_is_one_line():
    for doc in ["a: [1", "a: b: c", "\t- x", "---\na: 1\n---\nb: 2\n", "\ufeff\ufeffa: 1", "a: \xff\xfe", "*undefined"]:
        refused(doc)


def test_agent_policy_merge_uses_the_same_reader():
    from openshell.agents.fragment import merge_fragment

    with pytest.raises(PolicyError) as info:
        merge_fragment(LAUGHS, {})
    assert info.value.field.startswith("network_policies.bomb.endpoints[0].allowed_ips")
    with pytest.raises(PolicyError) as info:
        merge_fragment(VALID_NET % "7:23", {})
    assert info.value.field == "network_policies.w.endpoints[0].port"


# ---------------------------------------------------------------- through a real gateway

SDK_PROBE = r"""
import json, sys
from openshell.client.sdk import OpenShellClient, InvalidRequest, OpenShellError
client = OpenShellClient.from_config()
out = []
for op, name, doc in json.load(sys.stdin):
    try:
        if op == "set":
            client.set_policy(name, doc)
        else:
            client.create_sandbox(name=name, policy_yaml=doc)
        out.append(["accepted", "", ""])
    except InvalidRequest as exc:
        out.append(["invalid", exc.field, str(exc)])
    except OpenShellError as exc:
        out.append([type(exc).__name__, "", str(exc)])
out.append(["health", client.health(), ""])
print(json.dumps(out))
"""


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _gateway_pid(gateway) -> int:
    return int((gateway.state_dir / "gateway.pid").read_text().split()[0])


def _sdk(gateway, calls) -> list:
    p = subprocess.run([sys.executable, "-c", SDK_PROBE], env=gateway.env, input=json.dumps(calls).encode(), capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    return json.loads(p.stdout)


@pytest.fixture
def pi_sandbox(gateway, tmp_path):
    name = "sec-pi-bomb"
    gateway.cli("sandbox", "delete", name)
    gateway.cli("sandbox", "create", "--name", name, "--detach", check=True)
    yield name
    gateway.cli("sandbox", "delete", name)


def test_gateway_refuses_bombs_with_bounded_memory(gateway, pi_sandbox):
    pid = _gateway_pid(gateway)
    before = _rss_kib(pid)
    attacks = [
        ("set", pi_sandbox, ALIAS_BOMB, "network_policies.bomb.endpoints[0].allowed_ips"),
        ("set", pi_sandbox, LAUGHS, "network_policies.bomb.endpoints[0].allowed_ips"),
        ("set", pi_sandbox, DEEP_NEST, "network_policies.deep.endpoints[0].allowed_ips[0]"),
        ("create", "sec-pi-bomb-create", LAUGHS, "spec.policy_yaml.network_policies.bomb.endpoints[0].allowed_ips"),
        ("create", "sec-pi-deep-create", DEEP_NEST, "spec.policy_yaml.network_policies.deep.endpoints[0].allowed_ips[0]"),
        ("set", pi_sandbox, VALID_NET % "7:23", "network_policies.w.endpoints[0].port"),
        ("create", "sec-pi-uid", "version: 1\nprocess: {run_as_user: 4294967295}\n", "spec.policy_yaml.process.run_as_user"),
        ("set", pi_sandbox, 'version: 1\nnetwork_policies: {w: {name: "a\0b", endpoints: [], binaries: []}}\n', "network_policies.w.name"),
    ]
    results = _sdk(gateway, [[op, name, doc] for op, name, doc, _ in attacks])
    for (op, _name, _doc, field), (kind, got_field, message) in zip(attacks, results, strict=False):
        assert kind == "invalid", (op, field, message[:500])
        assert got_field.removeprefix("policy_yaml.").startswith(field), (field, got_field)
        assert "\n" not in message and len(message) < 1000, message[:500]
    assert results[-1][0] == "health" and results[-1][1]
    grown_mib = (_rss_kib(pid) - before) / 1024
    assert grown_mib < 200, f"gateway grew by {grown_mib:.0f} MiB"
    # no sandbox was created from a refused document
    names = gateway.cli("sandbox", "list", "-o", "json", check=True).stdout.decode()
    assert "sec-pi-bomb-create" not in names and "sec-pi-uid" not in names
    # another ordinary call still answers
    p = gateway.cli("policy", "get", pi_sandbox, check=True)
    assert b"version: 1" in p.stdout


def test_gateway_refuses_an_oversized_message(gateway, pi_sandbox):
    pid = _gateway_pid(gateway)
    before = _rss_kib(pid)
    doc = "version: 1\n#" + "x" * (8 << 20) + "\n"
    (kind, _f, message), health = _sdk(gateway, [["set", pi_sandbox, doc]])
    assert kind != "accepted" and "\n" not in message
    assert health[0] == "health" and health[1]
    assert (_rss_kib(pid) - before) / 1024 < 200


def test_cli_validate_prints_one_bounded_line(gateway, tmp_path):
    for doc in (ALIAS_BOMB, LAUGHS, DEEP_NEST, 'version: 1\nprocess: {run_as_user: "a\0"}\n'):
        path = write_policy(tmp_path / "p.yaml", doc)
        p = subprocess.run([OPENSHELL, "policy", "validate", path], env=gateway.env, capture_output=True, timeout=60)
        out = p.stdout + p.stderr
        assert p.returncode == 1 and len(out) < 2000, out[:2000]
        assert b"Traceback" not in out and b"recursion" not in out


def test_cli_explain_refuses_the_bomb(gateway, tmp_path):
    path = write_policy(tmp_path / "p.yaml", LAUGHS)
    p = subprocess.run(
        [OPENSHELL, "policy", "explain", "--policy", path, "--binary", "/usr/bin/curl", "--host", "bomb.test", "--port", "443", "--resolved", "10.199.0.2"],
        env=gateway.env,
        capture_output=True,
        timeout=60,
    )
    out = p.stdout + p.stderr
    assert p.returncode != 0 and len(out) < 2000 and b"allowed_ips" in out, out[:2000]


def test_acceptance_invalid_cases_still_pass():
    # the shared acceptance cases (openshell-core/tests/policy runs them too)
    import yaml
    from conftest import cases_dir

    cases = yaml.safe_load((cases_dir() / "policy-decisions.yaml").read_text())["invalid"]
    for case in cases:
        with pytest.raises(PolicyError) as info:
            parse_policy(case["document"])
        if "field" in case:
            assert info.value.field == case["field"], case["id"]
        assert case["expect_error_contains"] in str(info.value) or any(case["expect_error_contains"] in str(e) for e in info.value.errors), case["id"]


def test_highest_accepted_uid_really_runs(gateway, tmp_path):
    # What validation accepts must also work at exec time (it used to fail only there).
    name = "sec-pi-maxuid"
    gateway.cli("sandbox", "delete", name)
    doc = "version: 1\nprocess: {run_as_user: 4294967294, run_as_group: 4294967294}\n"
    try:
        gateway.cli("sandbox", "create", "--name", name, "--policy", write_policy(tmp_path / "u.yaml", doc), "--detach", check=True)
        p = gateway.sx(name, "id", "-u")
        assert p.returncode == 0 and p.stdout.decode().strip() == "4294967294", p.stderr.decode()[-2000:]
    finally:
        gateway.cli("sandbox", "delete", name)
