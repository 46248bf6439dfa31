"""Live policy updates: static sections cannot change on a running sandbox (POLICY.md §1)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from openshell.policy.errors import FieldError, PolicyError
from openshell.policy.model import Policy
from openshell.policy.parse import parse_policy
from openshell.policy.yamlio import load_document

#: document section → (Policy attribute, its fields)
_STATIC = {
    "filesystem_policy": "filesystem",
    "landlock": "landlock",
    "process": "process",
}


def check_static_unchanged(old: Policy, new_doc: str | bytes | Mapping[str, Any]) -> Policy:
    """Validate a live update against the running policy.

    :param old: the policy in force.
    :param new_doc: the update as YAML text/bytes or a loaded mapping.
    :returns: the new policy, with the static sections (``filesystem_policy``,
        ``landlock``, ``process``) taken from ``old`` (an omitted static section
        keeps the current one).
    :raises PolicyError: when the update is invalid, or when a static section is
        given and differs from ``old``: the error names the changed field (e.g.
        ``filesystem_policy.read_only``) and says to recreate the sandbox.
    """
    doc = load_document(new_doc) if isinstance(new_doc, (str, bytes)) else new_doc
    new = parse_policy(doc)
    present = doc if isinstance(doc, Mapping) else {}
    errors: list[FieldError] = []
    for section, attr in _STATIC.items():
        if section not in present:
            continue
        before, after = getattr(old, attr), getattr(new, attr)
        for f in dataclasses.fields(before):
            if getattr(before, f.name) != getattr(after, f.name):
                errors.append(
                    FieldError(
                        f"{section}.{f.name}",
                        f"{section} is static and cannot change on a running sandbox "
                        f"({getattr(before, f.name)!r} → {getattr(after, f.name)!r}); recreate the sandbox to change it, "
                        f"or omit {section} to keep the current one",
                    )
                )
    if errors:
        raise PolicyError.from_errors(errors)
    return dataclasses.replace(new, filesystem=old.filesystem, landlock=old.landlock, process=old.process)
