"""Labels of sandboxes, workspaces and providers: checking them and selecting by them.

``check_labels`` validates a label map (keys like Kubernetes' qualified names,
values at most 63 characters); ``parse_label_selector`` parses ``a=1,b!=2,c,!d``
into terms that all must match.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from openshell.gateway.errors import InvalidArgument

_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,252}[A-Za-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")


def check_labels(labels: Mapping[str, str], field: str = "labels") -> dict[str, str]:
    """Return ``labels`` as a dict. :raises InvalidArgument: naming ``field.key`` of a bad key or value."""
    for key, value in labels.items():
        if not _LABEL_KEY_RE.match(key):
            raise InvalidArgument(f"{field}.{key}", "label keys are letters, digits, '.', '_', '/', '-' (start and end alphanumeric)")
        if not _LABEL_VALUE_RE.match(value):
            raise InvalidArgument(f"{field}.{key}", "label values are at most 63 letters, digits, '.', '_', '-' (start and end alphanumeric)")
    return dict(labels)


@dataclass(frozen=True)
class LabelTerm:
    """One term of a label selector."""

    key: str
    op: str  # "=", "!=", "exists", "!exists"
    value: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "=":
            return labels.get(self.key) == self.value
        return labels.get(self.key) != self.value


def parse_label_selector(selector: str) -> list[LabelTerm]:
    """Parse ``"a=1,b!=2,c,!d"`` (all terms must match; ``==`` equals ``=``).

    :raises InvalidArgument: (field ``label_selector``) for an unparseable term.
    """
    terms: list[LabelTerm] = []
    for raw in selector.split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            op = "!="
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=", 1).split("=", 1))
            op = "="
        elif term.startswith("!"):
            key, value, op = term[1:].strip(), "", "!exists"
        else:
            key, value, op = term, "", "exists"
        if not _LABEL_KEY_RE.match(key) or "=" in value or "!" in value:
            raise InvalidArgument("label_selector", f"cannot parse {term!r}; use 'key=value', 'key!=value', 'key' or '!key' joined by ','")
        terms.append(LabelTerm(key, op, value))
    return terms
