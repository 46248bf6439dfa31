"""Sandbox policy: YAML model, validation, normalisation, decisions (POLICY.md).

Public API::

    parse_policy(source) -> Policy          # validate + normalise (raises PolicyError)
    default_policy() -> Policy              # what a sandbox without a policy gets
    dump_policy(policy) -> str              # YAML, re-parseable to an equal Policy
    check_static_unchanged(old, new_doc)    # live updates keep static sections
    decide(engine, compiled, inp, resolved) # engine decision + destination safety
"""

from __future__ import annotations

from openshell.policy.decide import decide
from openshell.policy.dump import dump_policy
from openshell.policy.errors import FieldError, PolicyError
from openshell.policy.live import check_static_unchanged
from openshell.policy.parse import default_policy, parse_policy

__all__ = [
    "FieldError",
    "PolicyError",
    "check_static_unchanged",
    "decide",
    "default_policy",
    "dump_policy",
    "parse_policy",
]
