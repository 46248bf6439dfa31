"""Live policy updates: static sections cannot change on a running sandbox (POLICY.md §1)."""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Mapping
from typing import Any

from openshell.policy import defaults as D
from openshell.policy import parse as P
from openshell.policy.errors import FieldError, PolicyError
from openshell.policy.model import Policy
from openshell.policy.parse import parse_policy

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
    if isinstance(new_doc, (str, bytes)):
        from openshell.policy.yamlio import load_document

        doc = load_document(new_doc)
    else:
        doc = new_doc
    present = doc if isinstance(doc, Mapping) else {}
    # Checked before validation so that a removed path is reported as such even
    # when the update spells its replacement with ".." (which validation refuses).
    removed = _removed_paths(old, present.get("filesystem_policy")) if "filesystem_policy" in present else []
    if removed:
        raise PolicyError.from_errors(removed)
    new = parse_policy(doc)
    errors: list[FieldError] = []
    for section, attr in _STATIC.items():
        if section not in present:
            continue
        before, after = getattr(old, attr), getattr(new, attr)
        for f in dataclasses.fields(before):
            if not _same(getattr(before, f.name), getattr(after, f.name)):
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


def _same(before: Any, after: Any) -> bool:
    """Whether a static field is unchanged. Path lists are sets to Landlock: the same paths
    in another order (or ``include_workdir`` adding ``/sandbox`` at another place) are
    the same rules, not a change."""
    if isinstance(before, tuple) and isinstance(after, tuple):
        return set(before) == set(after)
    return bool(before == after)


def _lenient_path(value: Any) -> Any:
    """``value`` normalised as validation would, or as given when validation will refuse it."""
    if isinstance(value, str) and value.startswith("/") and ".." not in value.split("/"):
        norm = posixpath.normpath(value)
        return "/" + norm.lstrip("/") if norm.startswith("//") else norm
    return value


def _removed_paths(old: Policy, fs: Any) -> list[FieldError]:
    """The paths of ``old``'s filesystem that the update's ``filesystem_policy`` section drops.

    The update's lists are completed as validation completes them (the workdir
    when ``include_workdir``, the §4 baseline), so an incomplete section only
    loses the paths it really leaves out. A path moved from one list to the
    other is removed from the first. A section validation will refuse for its
    shape (not a mapping, lists that are not lists) yields nothing here.
    """
    if fs is None:
        fs = {}
    if not isinstance(fs, Mapping) or not isinstance(fs.get("include_workdir", False), bool):
        return []
    lists: dict[str, set[Any]] = {}
    for name in ("read_only", "read_write"):
        items = fs.get(name) or []
        if not isinstance(items, (list, tuple)):
            return []
        lists[name] = {_lenient_path(v) for v in items if isinstance(v, str)}
    if fs.get("include_workdir", False):
        lists["read_write"].add(D.WORKDIR)
    listed = lists["read_only"] | lists["read_write"]
    for name, baseline in (("read_only", D.BASELINE_READ_ONLY), ("read_write", D.BASELINE_READ_WRITE)):
        lists[name].update(p for p in baseline if p not in listed and P.path_exists(p))
    errors = []
    for name in ("read_only", "read_write"):
        for path in getattr(old.filesystem, name):
            if path not in lists[name]:
                errors.append(
                    FieldError(
                        f"filesystem_policy.{name}",
                        f'path "{path}" cannot be removed from a running sandbox (filesystem paths are fixed when it is created); '
                        f"keep it in {name}, or recreate the sandbox to change them",
                    )
                )
    return errors
