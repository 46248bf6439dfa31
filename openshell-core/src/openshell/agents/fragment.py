"""Merge an agent's network-policy fragment into a sandbox policy.

The user's policy wins: a ``network_policies`` key that the user's document
already has is kept as the user wrote it (``--policy`` overrides the agent's
rule by using the same key) and reported; every other key of the fragment is
added. The result is validated in full (POLICY.md) before anyone uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from openshell.policy import PolicyError, dump_policy, parse_policy
from openshell.policy.model import Policy
from openshell.policy.yamlio import load_document


@dataclass(frozen=True)
class MergedPolicy:
    """The result of :func:`merge_fragment`.

    :ivar document: the merged document in the user's shape (send this to the gateway).
    :ivar policy: the validated, normalised policy.
    :ivar added: fragment keys added; ``kept``: fragment keys the user's policy overrides.
    """

    document: dict[str, Any]
    policy: Policy
    added: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    @property
    def yaml(self) -> str:
        """The merged document as YAML (what the gateway stores)."""
        return yaml.safe_dump(self.document, sort_keys=False, default_flow_style=False)

    def normalised_yaml(self) -> str:
        """The normalised policy (baseline paths included) as YAML, for showing the user."""
        return dump_policy(self.policy)


def merge_fragment(base: str | Mapping[str, Any] | None, fragment: Mapping[str, Any]) -> MergedPolicy:
    """Add ``fragment``'s network rules to ``base``.

    :param base: the user's policy (YAML text or mapping) or None for the
        default policy (``version: 1``, deny all network).
    :param fragment: ``{rule key: rule}`` as an agent's ``policy_fragment()`` returns.
    :raises PolicyError: ``base`` is not a mapping, or the merged document is
        invalid (the error names the field, e.g. ``network_policies.claude_agent.endpoints[0].host``).
    """
    if base is None:
        doc: dict[str, Any] = {"version": 1}
    elif isinstance(base, Mapping):
        doc = dict(base)
    else:
        # The same strict, bounded reader as every other policy entry point.
        loaded = load_document(base)
        if not isinstance(loaded, dict):
            raise PolicyError("<document>", "must be a mapping with at least 'version: 1'")
        doc = loaded
    rules = doc.get("network_policies") or {}
    if not isinstance(rules, Mapping):
        raise PolicyError("network_policies", "must be a mapping of rule id to rule")
    merged_rules = dict(rules)
    added: list[str] = []
    kept: list[str] = []
    for key, rule in fragment.items():
        if key in merged_rules:
            kept.append(key)
        else:
            merged_rules[key] = rule
            added.append(key)
    if merged_rules:
        doc["network_policies"] = merged_rules
    policy = parse_policy(doc)
    return MergedPolicy(document=doc, policy=policy, added=added, kept=kept)
