"""Sandbox policy: YAML model, validation, normalisation, decisions (POLICY.md).

Public API::

    parse_policy(source) -> Policy          # validate + normalise (raises PolicyError)
    default_policy() -> Policy              # what a sandbox without a policy gets
    dump_policy(policy) -> str              # YAML, re-parseable to an equal Policy
    check_static_unchanged(old, new_doc)    # live updates keep static sections
    decide(engine, compiled, inp, resolved) # engine decision + destination safety
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openshell._lazy import lazy_exports

# Eager: the function shares its module's name, and a later import of the
# submodule must not leave the module where the function is expected.
from openshell.policy.decide import decide

if TYPE_CHECKING:  # pragma: no cover - imported on first use (__getattr__)
    from openshell.policy.dump import dump_policy
    from openshell.policy.errors import FieldError, PolicyError
    from openshell.policy.live import check_static_unchanged
    from openshell.policy.parse import default_policy, parse_policy

# name -> module, imported on first use: a supervisor's start parses the JSON form
# of its policy and must not pay for the YAML parser (``dump``, ``yamlio``).
_HOME = {
    "dump_policy": "dump",
    "FieldError": "errors",
    "PolicyError": "errors",
    "check_static_unchanged": "live",
    "default_policy": "parse",
    "parse_policy": "parse",
}


__getattr__ = lazy_exports("openshell.policy", _HOME, globals())


__all__ = [
    "FieldError",
    "PolicyError",
    "check_static_unchanged",
    "decide",
    "default_policy",
    "dump_policy",
    "parse_policy",
]
