"""Validation and normalisation of policy documents (POLICY.md §1, §2.2–2.5, §4, §5)."""

from __future__ import annotations

import pytest
from openshell.policy import PolicyError, default_policy, dump_policy, parse_policy
from openshell.policy import parse as parse_mod


def _net(endpoint: dict, binaries: list | None = None) -> dict:
    return {"version": 1, "network_policies": {"r": {"endpoints": [endpoint], "binaries": binaries or [{"path": "/usr/bin/curl"}]}}}


def _error(doc) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(doc)
    return info.value


@pytest.fixture
def all_paths_exist(monkeypatch):
    monkeypatch.setattr(parse_mod, "path_exists", lambda p: True)


# ---------------------------------------------------------------- error shape


def test_error_str_is_field_colon_message():
    err = _error({"version": 1, "landlock": {"compatibility": "maybe"}})
    assert err.field == "landlock.compatibility"
    assert str(err) == f"{err.field}: {err.message}"
    assert "best_effort | hard_requirement" in err.message


def test_every_problem_is_reported_and_the_first_names_the_field():
    err = _error({"version": 1, "bogus": 1, "process": {"run_as_user": "root", "extra": 2}})
    fields = [e.field for e in err.errors]
    assert fields[0] == err.field
    assert {"bogus", "process.extra", "process.run_as_user"} <= set(fields)


def test_unknown_keys_are_rejected_at_every_level():
    doc = _net({"host": "a.example.com", "port": 443, "protocol": "rest", "access": "full", "rules": [{"allow": {"method": "GET", "path": "/", "bogus": 1}}]})
    assert _error(doc).field == "network_policies.r.endpoints[0].rules[0].allow.bogus"
    assert _error(_net({"host": "a.example.com", "port": 1, "colour": "red"})).field == "network_policies.r.endpoints[0].colour"
    assert _error(_net({"host": "a.example.com", "port": 1}, [{"path": "/x", "sha": "1"}])).field == "network_policies.r.binaries[0].sha"
    assert _error({"version": 1, "filesystem_policy": {"read_only": [], "writable": []}}).field == "filesystem_policy.writable"


@pytest.mark.parametrize(
    ("endpoint", "field", "accepted"),
    [
        ({"host": "a.example.com", "port": 443, "protocol": "rest", "access": "all"}, "access", "read-only | read-write | full"),
        ({"host": "a.example.com", "port": 443, "protocol": "rest", "access": "full", "enforcement": "warn"}, "enforcement", "enforce | audit"),
        ({"host": "a.example.com", "port": 443, "tls": "terminate"}, "tls", "skip"),
        ({"host": "a.example.com", "port": 443, "protocol": "grpc"}, "protocol", "rest"),
    ],
)
def test_unknown_enum_values_name_the_field_and_the_accepted_values(endpoint, field, accepted):
    err = _error(_net(endpoint))
    assert err.field == f"network_policies.r.endpoints[0].{field}"
    assert accepted in err.message


def test_yaml_syntax_error_gives_the_line():
    err = _error("version: 1\nnetwork_policies:\n  a: [\n")
    assert err.field == "document"
    assert "line" in err.message


def test_duplicate_yaml_keys_are_rejected():
    err = _error("version: 1\nprocess: {}\nprocess: {}\n")
    assert "duplicate key" in err.message


def test_document_must_be_a_mapping():
    assert _error("- 1\n- 2\n").field == "document"


def test_version_is_required_and_only_1():
    assert _error({"process": {}}).field == "version"
    assert _error({"version": True}).field == "version"
    assert _error({"version": "1"}).field == "version"


# ---------------------------------------------------------------- process (§5)


@pytest.mark.parametrize("user", ["root", "0", 0, -1, "daemon", True])
def test_run_as_user_rejects_root_and_names(user):
    assert _error({"version": 1, "process": {"run_as_user": user}}).field == "process.run_as_user"


def test_run_as_group_rejects_root():
    assert _error({"version": 1, "process": {"run_as_group": "root"}}).field == "process.run_as_group"


def test_numeric_uid_is_kept_as_text():
    assert parse_policy({"version": 1, "process": {"run_as_user": 1000}}).process.run_as_user == "1000"


# ---------------------------------------------------------------- filesystem (§4)


def test_default_policy_has_baseline_workdir_best_effort_and_no_network(all_paths_exist):
    p = default_policy()
    assert p.filesystem.include_workdir is True
    assert "/sandbox" in p.filesystem.read_write and "/tmp" in p.filesystem.read_write and "/dev/null" in p.filesystem.read_write
    assert {"/usr", "/lib", "/lib64", "/bin", "/etc", "/proc", "/dev/urandom"} <= set(p.filesystem.read_only)
    assert p.landlock.compatibility == "best_effort"
    assert p.process.run_as_user == "sandbox" and p.process.run_as_group == "sandbox"
    assert p.network == ()


def test_empty_document_is_the_default_policy():
    assert parse_policy("") == default_policy()


def test_include_workdir_false_when_section_present_but_unset():
    p = parse_policy({"version": 1, "filesystem_policy": {"read_write": ["/data"]}})
    assert p.filesystem.include_workdir is False
    assert "/sandbox" not in p.filesystem.read_write


def test_include_workdir_true_when_section_omitted():
    assert "/sandbox" in parse_policy({"version": 1}).filesystem.read_write


def test_baseline_only_adds_paths_that_exist(monkeypatch):
    monkeypatch.setattr(parse_mod, "path_exists", lambda p: p != "/lib64")
    p = parse_policy({"version": 1})
    assert "/lib64" not in p.filesystem.read_only
    assert "/usr" in p.filesystem.read_only


def test_baseline_does_not_duplicate_a_path_the_policy_lists(all_paths_exist):
    p = parse_policy({"version": 1, "filesystem_policy": {"read_write": ["/etc"]}})
    assert "/etc" not in p.filesystem.read_only
    assert p.filesystem.read_write.count("/etc") == 1


def test_paths_are_normalised():
    p = parse_policy({"version": 1, "filesystem_policy": {"read_only": ["//opt//tools/./bin/"]}})
    assert p.filesystem.read_only[0] == "/opt/tools/bin"


@pytest.mark.parametrize(("path", "word"), [("relative/path", "absolute"), ("/a/../b", ".."), ("/", "broad"), ("//", "broad"), ("/a\x00", "control")])
def test_bad_paths_are_rejected(path, word):
    err = _error({"version": 1, "filesystem_policy": {"read_only": [path]}})
    assert err.field == "filesystem_policy.read_only[0]"
    assert word in err.message


# ---------------------------------------------------------------- network (§2.2–2.5)


def test_hosts_are_lower_cased_and_trailing_dot_removed():
    assert parse_policy(_net({"host": "API.Example.COM.", "port": 443})).network[0].endpoints[0].host == "api.example.com"


def test_port_becomes_ports():
    ep = parse_policy(_net({"host": "a.example.com", "port": 443})).network[0].endpoints[0]
    assert ep.ports == (443,)


@pytest.mark.parametrize("port", [0, 65536, "443", "8000-9000", True, 44.3])
def test_bad_ports_are_rejected(port):
    assert _error(_net({"host": "a.example.com", "port": port})).field == "network_policies.r.endpoints[0].port"


def test_port_and_ports_must_agree():
    assert _error(_net({"host": "a.example.com", "port": 80, "ports": [443]})).field == "network_policies.r.endpoints[0].port"
    assert parse_policy(_net({"host": "a.example.com", "port": 443, "ports": [443, 8443]})).network[0].endpoints[0].ports == (443, 8443)


@pytest.mark.parametrize("host", ["*", "**", "*.com", "example.*", "a.**.example.com", "a..example.com", "exa mple.com"])
def test_broad_or_malformed_hosts_are_rejected(host):
    err = _error(_net({"host": host, "port": 443}))
    assert err.field == "network_policies.r.endpoints[0].host"


@pytest.mark.parametrize("host", ["*.example.com", "**.example.com", "*-api.example.com", "10.199.0.2", "localhost"])
def test_accepted_hosts(host):
    parse_policy(_net({"host": host, "port": 443}))


def test_ipv6_host_brackets_are_removed():
    assert parse_policy(_net({"host": "[2001:DB8::1]", "port": 443})).network[0].endpoints[0].host == "2001:db8::1"


def test_empty_host_needs_allowed_ips():
    assert _error(_net({"port": 8080})).field == "network_policies.r.endpoints[0].host"
    assert parse_policy(_net({"port": 8080, "allowed_ips": ["10.199.0.0/24"]})).network[0].endpoints[0].host == ""


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "169.254.169.254", "::1", "fe80::/16", "::/0", "::ffff:0:0/96"])
def test_allowed_ips_overlapping_always_blocked_ranges_are_rejected(cidr):
    err = _error(_net({"host": "a.example.com", "port": 443, "allowed_ips": [cidr]}))
    assert err.field == "network_policies.r.endpoints[0].allowed_ips[0]"
    assert cidr in err.message


def test_allowed_ips_must_parse():
    assert "CIDR" in _error(_net({"host": "a.example.com", "port": 443, "allowed_ips": ["10.0.0.0/33"]})).message


def test_rest_rules_need_protocol_rest():
    err = _error(_net({"host": "a.example.com", "port": 443, "access": "full"}))
    assert err.field == "network_policies.r.endpoints[0].access"
    assert "protocol: rest" in err.message


def test_tls_skip_forbids_rest():
    assert (
        _error(_net({"host": "a.example.com", "port": 443, "protocol": "rest", "access": "full", "tls": "skip"})).field == "network_policies.r.endpoints[0].tls"
    )


def test_empty_allow_rule_is_not_allow_everything():
    doc = _net({"host": "a.example.com", "port": 443, "protocol": "rest", "rules": [{"allow": None}]})
    assert _error(doc).field == "network_policies.r.endpoints[0].rules[0].allow"


def test_non_canonical_rule_paths_are_rejected():
    doc = _net({"host": "a.example.com", "port": 443, "protocol": "rest", "access": "full", "deny_rules": [{"path": "/a/../admin"}]})
    assert _error(doc).field == "network_policies.r.endpoints[0].deny_rules[0].path"


def test_query_matchers_accept_a_glob_or_any():
    doc = _net(
        {
            "host": "a.example.com",
            "port": 443,
            "protocol": "rest",
            "rules": [{"allow": {"method": "get", "path": "/s", "query": {"a": "x*", "b": {"any": ["1", "2"]}, "n": 5}}}],
        }
    )
    rule = parse_policy(doc).network[0].endpoints[0].rules[0]
    assert rule.method == "GET"
    assert [(k, m.globs) for k, m in rule.query] == [("a", ("x*",)), ("b", ("1", "2")), ("n", ("5",))]


def test_rule_needs_endpoints_and_binaries():
    err = _error({"version": 1, "network_policies": {"r": {"endpoints": []}}})
    assert err.field == "network_policies.r.binaries"


def test_rule_keys_are_restricted():
    assert _error({"version": 1, "network_policies": {"bad key": {"endpoints": [], "binaries": []}}}).field == "network_policies.bad key"


def test_name_defaults_to_key():
    assert parse_policy({"version": 1, "network_policies": {"gh": {"endpoints": [], "binaries": []}}}).network[0].name == "gh"


# ---------------------------------------------------------------- dump


def test_dump_is_reparseable_to_an_equal_policy():
    doc = {
        "version": 1,
        "filesystem_policy": {"include_workdir": True, "read_only": ["/opt"], "read_write": ["/data"]},
        "landlock": {"compatibility": "hard_requirement"},
        "process": {"run_as_user": 1000, "run_as_group": "sandbox"},
        "network_policies": {
            "gh": {
                "name": "GitHub",
                "endpoints": [
                    {
                        "host": "api.github.com",
                        "ports": [443, 8443],
                        "protocol": "rest",
                        "enforcement": "audit",
                        "access": "read-only",
                        "rules": [{"allow": {"method": "POST", "path": "/x", "query": {"a": {"any": ["1", "2"]}}}}],
                        "deny_rules": [{"method": "*", "path": "/admin/**"}],
                    }
                ],
                "binaries": [{"path": "/usr/bin/curl"}, {"path": "/opt/**"}],
            },
            "lan": {"endpoints": [{"port": 8080, "allowed_ips": ["10.199.0.0/24"]}], "binaries": [{"path": "/**"}]},
        },
    }
    p = parse_policy(doc)
    assert parse_policy(dump_policy(p)) == p


def test_dump_of_default_policy_roundtrips():
    p = default_policy()
    assert parse_policy(dump_policy(p)) == p
