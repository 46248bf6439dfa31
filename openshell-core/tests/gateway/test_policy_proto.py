"""The SDK's structured policy message to and from our policy model (openshell.gateway.policy_proto)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from openshell._proto import sandbox_pb2
from openshell.gateway.errors import InvalidArgument
from openshell.gateway.policy_proto import document_from_proto, policy_to_proto, policy_yaml_from_proto, policy_yaml_to_proto
from openshell.policy import PolicyError, check_static_unchanged, default_policy, dump_policy, parse_policy
from openshell.policy.model import Endpoint, HttpRule, Policy

CASES = Path(__file__).resolve().parents[3] / "tests" / "cases" / "policy-decisions.yaml"


def _acceptance_policies() -> list[tuple[str, dict]]:
    data = yaml.safe_load(CASES.read_text())
    out: dict[str, dict] = {}
    for case in data["cases"]:
        doc = case.get("document") or {"version": 1, "network_policies": case["policy"]}
        out.setdefault(repr(doc), (case["id"], doc))
    return list(out.values())


def _canonical(policy: Policy) -> Policy:
    """``policy`` with its maps in key order: message maps have no order, and
    neither rule keys (the smallest matching key wins) nor query keys depend on it."""

    def rule(r: HttpRule) -> HttpRule:
        return dataclasses.replace(r, query=tuple(sorted(r.query)))

    def endpoint(e: Endpoint) -> Endpoint:
        return dataclasses.replace(e, rules=tuple(map(rule, e.rules)), deny_rules=tuple(map(rule, e.deny_rules)))

    network = tuple(dataclasses.replace(n, endpoints=tuple(map(endpoint, n.endpoints))) for n in sorted(policy.network, key=lambda n: n.key))
    return dataclasses.replace(policy, network=network)


def _round_trip(msg: sandbox_pb2.SandboxPolicy) -> sandbox_pb2.SandboxPolicy:
    """As the SDK sends it: serialised and parsed again."""
    return sandbox_pb2.SandboxPolicy.FromString(msg.SerializeToString())


@pytest.mark.parametrize(("case_id", "doc"), _acceptance_policies(), ids=[c for c, _ in _acceptance_policies()])
def test_every_acceptance_policy_survives_model_to_message_and_back(case_id, doc):
    policy = parse_policy(doc)
    msg = _round_trip(policy_to_proto(policy))
    back = parse_policy(document_from_proto(msg))
    assert _canonical(back) == _canonical(policy), case_id
    assert policy_to_proto(back) == msg
    assert _canonical(parse_policy(policy_yaml_from_proto(msg))) == _canonical(policy)


def test_every_supported_field_survives_the_round_trip():
    doc = {
        "version": 1,
        "filesystem_policy": {"include_workdir": False, "read_only": ["/usr", "/opt/tools"], "read_write": ["/var/scratch"]},
        "landlock": {"compatibility": "hard_requirement"},
        "process": {"run_as_user": "1500", "run_as_group": "1600"},
        "network_policies": {
            "api": {
                "name": "API access",
                "endpoints": [
                    {
                        "host": "api.example.test",
                        "ports": [443, 8443],
                        "protocol": "rest",
                        "enforcement": "audit",
                        "access": "read-only",
                        "rules": [{"allow": {"method": "POST", "path": "/v1/**", "query": {"tag": "v-*", "kind": {"any": ["a", "b*"]}}}}],
                        "deny_rules": [{"method": "DELETE", "path": "/admin/**"}],
                        "allowed_ips": ["10.199.0.0/24"],
                    },
                    {"host": "raw.example.test", "port": 22, "tls": "skip"},
                    {"ports": [5432], "allowed_ips": ["10.199.1.0/24"]},
                ],
                "binaries": [{"path": "/usr/bin/curl"}, {"path": "/opt/**"}],
            }
        },
    }
    policy = parse_policy(doc)
    msg = _round_trip(policy_to_proto(policy))
    assert _canonical(parse_policy(document_from_proto(msg))) == _canonical(policy)
    ep = msg.network_policies["api"].endpoints[0]
    assert list(ep.ports) == [443, 8443] and ep.enforcement == sandbox_pb2.NETWORK_ENFORCEMENT_MODE_AUDIT
    assert ep.access == sandbox_pb2.NETWORK_ACCESS_PRESET_READ_ONLY
    assert ep.rules[0].allow.query["kind"].any == ["a", "b*"] and ep.rules[0].allow.query["tag"].glob == "v-*"
    assert msg.network_policies["api"].endpoints[1].tls == sandbox_pb2.NETWORK_TLS_MODE_SKIP
    assert msg.network_policies["api"].endpoints[1].port == 22
    assert msg.landlock.compatibility == "hard_requirement" and msg.process.run_as_group == "1600"


def test_a_stored_document_answers_as_the_message():
    assert policy_yaml_to_proto(dump_policy(default_policy())) == policy_to_proto(default_policy())


def test_unset_sections_get_the_defaults_and_version_zero_means_one():
    msg = sandbox_pb2.SandboxPolicy()
    assert parse_policy(document_from_proto(msg)) == default_policy()
    # An incomplete filesystem gets the baseline added.
    msg = sandbox_pb2.SandboxPolicy(version=1, filesystem=sandbox_pb2.FilesystemPolicy(include_workdir=True))
    assert parse_policy(document_from_proto(msg)).filesystem == default_policy().filesystem


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        (sandbox_pb2.SandboxPolicy.FromString(bytes([6 << 3 | 2, 0])), "spec.policy.network_middlewares"),
        (
            sandbox_pb2.SandboxPolicy(
                network_policies={
                    "r": sandbox_pb2.NetworkPolicyRule(endpoints=[sandbox_pb2.NetworkEndpoint.FromString(b"\xba\x01\x00")])
                }  # field 23 (mcp), empty
            ),
            "spec.policy.network_policies.r.endpoints[0].mcp",
        ),
        (
            sandbox_pb2.SandboxPolicy(
                network_policies={
                    "r": sandbox_pb2.NetworkPolicyRule(
                        endpoints=[
                            sandbox_pb2.NetworkEndpoint(
                                host="a.example.test", port=443, rules=[sandbox_pb2.L7Rule(allow=sandbox_pb2.L7Allow.FromString(b"\x1a\x02ls"))]
                            )
                        ]
                    )
                }
            ),
            "spec.policy.network_policies.r.endpoints[0].rules[0].allow.command",
        ),
        (
            sandbox_pb2.SandboxPolicy(
                network_policies={
                    "r": sandbox_pb2.NetworkPolicyRule(
                        endpoints=[sandbox_pb2.NetworkEndpoint(host="a.example.test", port=443, tls=sandbox_pb2.NETWORK_TLS_MODE_TERMINATE)]
                    )
                }
            ),
            "spec.policy.network_policies.r.endpoints[0].tls",
        ),
    ],
)
def test_fields_our_model_does_not_have_are_refused_by_name(msg, field):
    with pytest.raises(InvalidArgument) as info:
        policy_yaml_from_proto(_round_trip(msg), "spec.policy")
    assert info.value.field == field


@pytest.mark.parametrize(
    ("msg", "field", "words"),
    [
        (sandbox_pb2.SandboxPolicy(process=sandbox_pb2.ProcessPolicy(run_as_user="root")), "spec.policy.process.run_as_user", "root"),
        (sandbox_pb2.SandboxPolicy(filesystem=sandbox_pb2.FilesystemPolicy(read_only=["/usr/../etc"])), "spec.policy.filesystem.read_only[0]", '".."'),
        (sandbox_pb2.SandboxPolicy(filesystem=sandbox_pb2.FilesystemPolicy(read_write=["/"])), "spec.policy.filesystem.read_write[0]", "too broad"),
    ],
)
def test_validation_names_the_field_and_the_problem(msg, field, words):
    with pytest.raises(InvalidArgument) as info:
        policy_yaml_from_proto(msg, "spec.policy")
    assert info.value.field == field and words in info.value.message
    assert info.value.violations[0] == (field, info.value.message)


def _endpoint_rule(**endpoint) -> dict:
    return {"endpoints": [{"host": "api.example.test", "port": 443, **endpoint}], "binaries": [{"path": "/usr/bin/curl"}]}


@pytest.mark.parametrize(
    ("first", "second", "setting"),
    [
        ({"protocol": "rest", "access": "read-only"}, {}, "protocol"),
        ({}, {"tls": "skip"}, "tls"),
        ({"protocol": "rest", "access": "full"}, {"protocol": "rest", "access": "full", "enforcement": "audit"}, "enforcement"),
    ],
)
def test_two_rules_giving_one_endpoint_conflicting_settings_are_refused_naming_both(first, second, setting):
    doc = {"version": 1, "network_policies": {"alpha": _endpoint_rule(**first), "beta": _endpoint_rule(**second)}}
    with pytest.raises(PolicyError) as info:
        parse_policy(doc)
    assert info.value.field == "network_policies.beta.endpoints[0]"
    assert "network_policies.alpha.endpoints[0]" in info.value.message and setting in info.value.message


def test_same_endpoint_with_the_same_settings_in_two_rules_is_fine():
    # Different binaries may get different access to one endpoint.
    doc = {
        "version": 1,
        "network_policies": {"alpha": _endpoint_rule(protocol="rest", access="read-only"), "beta": _endpoint_rule(protocol="rest", access="full")},
    }
    assert len(parse_policy(doc).network) == 2


def test_a_live_update_removing_a_path_says_it_cannot_be_removed_before_the_traversal_problem():
    current = parse_policy({"version": 1, "filesystem_policy": {"include_workdir": True, "read_only": ["/opt/tools"]}})
    fs = {"include_workdir": True, "read_only": ["/opt/tools/../other"]}
    with pytest.raises(PolicyError) as info:
        check_static_unchanged(current, {"version": 1, "filesystem_policy": fs})
    assert info.value.field == "filesystem_policy.read_only" and "cannot be removed" in info.value.message
    assert '"/opt/tools"' in info.value.message
    # Leaving it out is a removal too; an added path is a change (static section).
    with pytest.raises(PolicyError) as info:
        check_static_unchanged(current, {"version": 1, "filesystem_policy": {"include_workdir": True}})
    assert "cannot be removed" in info.value.message
    with pytest.raises(PolicyError) as info:
        check_static_unchanged(current, {"version": 1, "filesystem_policy": {"include_workdir": True, "read_only": ["/opt/tools", "/srv"]}})
    assert info.value.field == "filesystem_policy.read_only" and "recreate the sandbox" in info.value.message
    # Moving a path from read_write to read_only removes it from read_write.
    fs = {"include_workdir": True, "read_only": ["/opt/tools", "/tmp"]}
    with pytest.raises(PolicyError) as info:
        check_static_unchanged(current, {"version": 1, "filesystem_policy": fs})
    assert info.value.field == "filesystem_policy.read_write" and "/tmp" in info.value.message


def test_a_live_update_with_an_incomplete_or_no_filesystem_keeps_the_current_one():
    current = default_policy()
    for doc in ({"version": 1}, {"version": 1, "filesystem_policy": {"include_workdir": True}}):
        assert check_static_unchanged(current, doc).filesystem == current.filesystem


def test_a_stored_document_that_no_longer_validates_answers_without_the_message():
    # E.g. stored before endpoint conflicts were refused: answers leave spec.policy unset.
    doc = {"version": 1, "network_policies": {"alpha": _endpoint_rule(protocol="rest", access="full"), "beta": _endpoint_rule()}}
    assert policy_yaml_to_proto(yaml.safe_dump(doc)) is None
