"""Policy → the Rego data document (``data.netpolicy``) the modules evaluate.

Done once per policy revision, so per-decision work is only ``set_input`` and
one query. Layout is documented at the top of ``network.rego``.
"""

from __future__ import annotations

import os
from typing import Any

from openshell.plugin import ACCESS_PRESETS, HOST_EXACT, HOST_WILDCARD, Endpoint, HttpRule, Policy, host_kind

_GLOB_CHARS = frozenset("*?[")


def is_glob(path: str) -> bool:
    """True when a binary path is a glob (POLICY.md §2.4), not an exact path."""
    return any(c in _GLOB_CHARS for c in path)


def endpoint_id(key: str, index: int) -> str:
    """Identifier of one endpoint in ``data.netpolicy.http`` (``key#index``)."""
    return f"{key}#{index}"


def resolve_symlink(path: str, root: str = "/", max_links: int = 40) -> str | None:
    """Return the canonical target of ``path`` as seen with ``root`` as ``/``, when it differs.

    The kernel reports canonical executable paths, so a policy naming a symlink
    (``/usr/bin/python3`` → ``python3.11``) must also accept the target. Links
    are followed component by component with ``root`` as the filesystem root
    (an absolute link target restarts at ``root``, ``..`` stops at it), so a
    container's root filesystem is judged by its own links, not the host's.

    :returns: the resolved absolute path inside ``root``, or None when it equals
        ``path`` or the links loop.
    """
    root = root or "/"
    pending = [p for p in path.split("/") if p]
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            links += 1
            if links > max_links:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p] + pending
            continue
        resolved.append(part)
    out = "/" + "/".join(resolved)
    return out if out != path else None


def _rule_data(rule: HttpRule) -> dict[str, Any]:
    return {
        "methods": [rule.method.upper()],
        "path": rule.path,
        "query": [{"key": k, "globs": list(m.globs)} for k, m in rule.query],
    }


def http_data(ep: Endpoint) -> dict[str, Any]:
    """Allow/deny rules of one inspected endpoint; the access preset becomes an allow rule on ``**``."""
    allow = []
    if ep.access:
        allow.append({"methods": list(ACCESS_PRESETS[ep.access]), "path": "**", "query": []})
    allow.extend(_rule_data(r) for r in ep.rules)
    return {"allow": allow, "deny": [_rule_data(r) for r in ep.deny_rules]}


def policy_data(policy: Policy, root: str = "/") -> dict[str, Any]:
    """Build ``{"netpolicy": {...}}`` for ``Interpreter.add_data`` (layout: ``network.rego``).

    :param policy: a validated policy.
    :param root: the sandbox's filesystem view, for resolving symlinked binaries.
    """
    exact_hosts: dict[str, dict[str, list[list[Any]]]] = {}
    wildcard_hosts: list[dict[str, Any]] = []
    any_host: dict[str, list[list[Any]]] = {}
    rule_binaries: dict[str, dict[str, Any]] = {}
    http: dict[str, Any] = {}
    for rule in policy.network:
        exact: dict[str, bool] = {}
        globs: list[str] = []
        for b in rule.binaries:
            if is_glob(b.path):
                globs.append(b.path)
                continue
            for path in filter(None, (b.path, resolve_symlink(b.path, root))):
                exact[path] = True
        rule_binaries[rule.key] = {"exact": exact, "globs": globs}
        for i, ep in enumerate(rule.endpoints):
            ref = [rule.key, i]
            kind = host_kind(ep.host)
            if kind == HOST_WILDCARD:
                wildcard_hosts.append({"key": rule.key, "index": i, "host": ep.host, "ports": list(ep.ports)})
            else:
                by_port = exact_hosts.setdefault(ep.host, {}) if kind == HOST_EXACT else any_host
                for port in ep.ports:
                    by_port.setdefault(str(port), []).append(ref)
            if ep.protocol == "rest":
                http[endpoint_id(rule.key, i)] = http_data(ep)
    return {
        "netpolicy": {
            "has_rules": bool(policy.network),
            "exact_hosts": exact_hosts,
            "wildcard_hosts": wildcard_hosts,
            "any_host": any_host,
            "rule_binaries": rule_binaries,
            "http": http,
        }
    }
