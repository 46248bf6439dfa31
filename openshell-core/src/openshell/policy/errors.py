"""The one error type of policy validation (POLICY.md: "every error names the
offending field by path and says what is accepted")."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: longest field path / message kept: an error never echoes unbounded input
MAX_FIELD_CHARS = 240
MAX_MESSAGE_CHARS = 400
#: problems kept per PolicyError (a document with thousands of bad entries
#: must not yield a megabyte of errors)
MAX_ERRORS = 20

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _bounded(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters (control characters shown as ``?``)."""
    text = _CONTROL_RE.sub("?", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class FieldError:
    """One validation problem.

    :ivar field: path of the offending field, e.g.
        ``network_policies.github.endpoints[0].access``; ``document`` for problems
        with the document as a whole (YAML syntax, not a mapping).
    :ivar message: what is wrong and what is accepted.
    """

    field: str
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "field", _bounded(str(self.field), MAX_FIELD_CHARS))
        object.__setattr__(self, "message", _bounded(str(self.message), MAX_MESSAGE_CHARS))

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class PolicyError(ValueError):
    """A policy document was rejected.

    ``str(err)`` is ``"<field>: <message>"`` of the first problem; ``.errors``
    holds every problem found (validation does not stop at the first one), and
    ``.field`` / ``.message`` are the first one's.
    """

    def __init__(self, field: str, message: str = "", *, errors: Iterable[FieldError] = ()) -> None:
        errs = list(errors)[:MAX_ERRORS] or [FieldError(field, message)]
        self.errors: list[FieldError] = errs
        self.field: str = errs[0].field
        self.message: str = errs[0].message
        super().__init__(str(errs[0]))

    @classmethod
    def from_errors(cls, errors: Iterable[FieldError]) -> PolicyError:
        """Build one error carrying several problems (the first names ``.field``)."""
        errs = list(errors)
        return cls(errs[0].field, errs[0].message, errors=errs)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"
