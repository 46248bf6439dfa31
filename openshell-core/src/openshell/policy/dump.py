"""Policy → YAML in the user-facing shape (POLICY.md §1).

``parse_policy(dump_policy(p)) == p`` on the machine that parsed ``p``: the
dump lists the normalised paths (workdir and baseline included), so parsing it
again adds nothing new.
"""

from __future__ import annotations

from typing import Any

import yaml

from openshell.policy.model import Endpoint, HttpRule, NetworkRule, Policy


def _rule_doc(rule: HttpRule) -> dict[str, Any]:
    out: dict[str, Any] = {"method": rule.method, "path": rule.path}
    if rule.query:
        out["query"] = {k: (m.globs[0] if len(m.globs) == 1 else {"any": list(m.globs)}) for k, m in rule.query}
    return out


def _endpoint_doc(ep: Endpoint) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ep.host:
        out["host"] = ep.host
    if len(ep.ports) == 1:
        out["port"] = ep.ports[0]
    else:
        out["ports"] = list(ep.ports)
    if ep.protocol:
        out["protocol"] = ep.protocol
    if ep.enforcement != "enforce":
        out["enforcement"] = ep.enforcement
    if ep.access:
        out["access"] = ep.access
    if ep.rules:
        out["rules"] = [{"allow": _rule_doc(r)} for r in ep.rules]
    if ep.deny_rules:
        out["deny_rules"] = [_rule_doc(r) for r in ep.deny_rules]
    if ep.allowed_ips:
        out["allowed_ips"] = list(ep.allowed_ips)
    if ep.tls:
        out["tls"] = ep.tls
    return out


def _network_doc(rule: NetworkRule) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rule.name != rule.key:
        out["name"] = rule.name
    out["endpoints"] = [_endpoint_doc(e) for e in rule.endpoints]
    out["binaries"] = [{"path": b.path} for b in rule.binaries]
    return out


def policy_document(policy: Policy) -> dict[str, Any]:
    """Return ``policy`` as a plain mapping in the shape ``parse_policy`` accepts."""
    return {
        "version": policy.version,
        "filesystem_policy": {
            "include_workdir": policy.filesystem.include_workdir,
            "read_only": list(policy.filesystem.read_only),
            "read_write": list(policy.filesystem.read_write),
        },
        "landlock": {"compatibility": policy.landlock.compatibility},
        "process": {"run_as_user": policy.process.run_as_user, "run_as_group": policy.process.run_as_group},
        "network_policies": {r.key: _network_doc(r) for r in policy.network},
    }


def dump_policy(policy: Policy) -> str:
    """Return ``policy`` as YAML text (user-facing shape, keys in spec order).

    :param policy: a validated policy.
    :returns: YAML that ``parse_policy`` turns back into an equal ``Policy``.
    """
    return yaml.safe_dump(policy_document(policy), sort_keys=False, default_flow_style=False)
