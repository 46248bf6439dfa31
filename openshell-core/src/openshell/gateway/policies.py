"""Live policy updates at the gateway: what a new revision must satisfy before it is stored.

POLICY.md §1 and §6: a policy is validated in full before it is stored; static
sections (``filesystem_policy``, ``landlock``, ``process``) cannot change on a
running sandbox. An update that omits a static section keeps the current one;
one that changes it is refused here, *before* anything is stored, with the
field named and the advice to recreate the sandbox.

The stored document is complete: omitted static sections are filled in from the
current revision, so every stored revision parses on its own to exactly the
policy the supervisor enforces (``openshell policy get`` shows all of it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from openshell.gateway.store import LOADED, PENDING, PolicyRevision
from openshell.policy import PolicyError, check_static_unchanged, dump_policy, parse_policy

SUPERSEDED = "superseded"


MAX_POLICY_BYTES = 1 << 20
"""Largest policy document accepted for a live update (UTF-8 bytes); a sane policy is a few KiB."""


class PolicyUpdateError(ValueError):
    """The update cannot be stored.

    :ivar field: the document path of the offending field (``filesystem_policy.read_only``),
        or ``""`` for the whole document.
    :ivar message: what is wrong and how to fix it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def prepare_update(current_yaml: str, new_yaml: str) -> str:
    """Validate ``new_yaml`` as a live update of the policy in ``current_yaml``.

    :param current_yaml: the sandbox's newest stored revision (it fixes the static sections).
    :param new_yaml: the submitted POLICY.md document.
    :returns: the document to store: ``new_yaml``'s network policies with the
        current static sections, as normalised YAML (``dump_policy``).
    :raises PolicyUpdateError: ``new_yaml`` is empty, over :data:`MAX_POLICY_BYTES`, invalid, or changes a static
        section (the first offending field is named; the message lists every one).
    """
    if not new_yaml.strip():
        raise PolicyUpdateError("", "the policy document is empty; pass a POLICY.md document (see 'openshell policy default')")
    size = len(new_yaml.encode("utf-8"))
    if size > MAX_POLICY_BYTES:
        raise PolicyUpdateError("", f"the policy document is {size} bytes; at most {MAX_POLICY_BYTES} are accepted")
    current = parse_policy(current_yaml)
    try:
        merged = check_static_unchanged(current, new_yaml)
    except PolicyError as exc:
        more = "; ".join(str(e) for e in exc.errors[1:])
        raise PolicyUpdateError(exc.field, exc.message + (f" (also {more})" if more else "")) from None
    return dump_policy(merged)


def policy_hash(document: str) -> str:
    """Return the sha256 (hex) of a stored policy document."""
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PolicyState:
    """The revisions of one sandbox as clients see them.

    :ivar revisions: every stored revision, oldest first.
    :ivar active: the revision in force: the newest one a supervisor reported
        loaded (0: none yet, the sandbox is still starting).
    """

    revisions: Sequence[PolicyRevision]
    active: int

    @classmethod
    def of(cls, revisions: Sequence[PolicyRevision]) -> PolicyState:
        """Build the state from the stored revisions (oldest first)."""
        loaded = [r.revision for r in revisions if r.status == LOADED]
        return cls(tuple(revisions), max(loaded, default=0))

    def status(self, rev: PolicyRevision) -> str:
        """The status clients see: the stored one, except that a revision still
        pending below the active one is ``superseded`` (the supervisor loaded a
        newer one first, e.g. the newest at its start; it will never load this one)."""
        if rev.status == PENDING and rev.revision < self.active:
            return SUPERSEDED
        return rev.status

    def get(self, version: int = 0) -> PolicyRevision | None:
        """Return revision ``version``; 0 means the active one (the newest stored while none is loaded)."""
        wanted = version or self.active
        if not wanted and self.revisions:
            return self.revisions[-1]
        return next((r for r in self.revisions if r.revision == wanted), None)

    def page(self, page_size: int, after: int | None) -> tuple[list[PolicyRevision], int | None]:
        """Return up to ``page_size`` revisions newest first, older than ``after`` when given.

        :returns: ``(items, last)``; ``last`` is the revision to continue after, None on the last page.
        """
        newest_first = [r for r in reversed(self.revisions) if after is None or r.revision < after]
        items = newest_first[:page_size]
        return items, (items[-1].revision if len(newest_first) > page_size else None)
