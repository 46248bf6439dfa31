"""One structured line per proxy decision (POLICY.md §2.6, STYLE.md logs).

Lines are logfmt (``key=value``, values with spaces or quotes in double quotes)
on logger ``openshell.supervisor.proxy`` at INFO (denials at WARNING)::

    event=decision time=2026-11-30T10:00:00.123Z sandbox=demo decision=DENIED engine=opa
    host=api.example.com port=443 binary=/usr/bin/python3.11 ancestors=/usr/bin/bash
    policy=- reason="endpoint api.example.com:443 is not allowed by any policy"

Header values are never passed here (they may hold credentials); L7 lines add
only ``method`` and ``path``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence

LOGGER_NAME = "openshell.supervisor.proxy"
#: events that refuse something the sandbox asked for
WARNING_EVENTS = frozenset({"credential_denied", "request_authority_mismatch", "bad_request"})


# printable ASCII except space, '"', '=' and '\\': the common case, printed as is
_BARE = re.compile(r"[!#-<>-\[\]-~]+")


def _quote(value: object) -> str:
    if value is None or value == "":
        return "-"
    text = value if type(value) is str else str(value)
    if _BARE.fullmatch(text):  # one regex call instead of a scan per special character
        return text
    if any(c in text for c in ' "=\\') or not text.isprintable():
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'
    return text


def logfmt(fields: Sequence[tuple[str, object]]) -> str:
    """Render ``(key, value)`` pairs as one logfmt line; empty/None values print ``-``."""
    return " ".join(f"{key}={_quote(value)}" for key, value in fields)


_second: tuple[int, str] = (-1, "")  # (unix second, its "YYYY-MM-DDTHH:MM:SS." prefix)


def _now() -> str:
    """UTC time with milliseconds, e.g. ``2026-11-30T10:00:00.123Z``.

    The formatted second is reused for every line within it (``strftime`` per
    line was a tenth of a decision line's cost).
    """
    global _second
    now = time.time()
    sec = int(now)
    if _second[0] != sec:
        _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec)))
    return f"{_second[1]}{int((now - sec) * 1000):03d}Z"


class DecisionLog:
    """Writes decision and connection-event lines for one sandbox.

    :param sandbox_id: sandbox name/id printed on every line.
    :param logger: destination; default ``logging.getLogger("openshell.supervisor.proxy")``.
    """

    def __init__(self, sandbox_id: str, logger: logging.Logger | None = None) -> None:
        self.sandbox_id = sandbox_id
        self.logger = logger or logging.getLogger(LOGGER_NAME)

    def decision(
        self,
        *,
        decision: str,
        engine: str,
        host: str,
        port: int,
        binary: str = "",
        ancestors: Sequence[str] = (),
        policy: str | None = None,
        reason: str = "",
        error: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Log one decision. ``decision`` is ``ALLOWED``, ``DENIED`` or ``AUDIT``."""
        fields: list[tuple[str, object]] = [
            ("event", "decision"),
            ("time", _now()),
            ("sandbox", self.sandbox_id),
            ("decision", decision),
            ("engine", engine),
            ("host", host),
            ("port", port),
            ("binary", binary),
            ("ancestors", ",".join(ancestors)),
            ("policy", policy),
            ("reason", reason),
        ]
        if error:
            fields.append(("error", error))
        if method is not None:
            fields += [("method", method), ("path", path)]
        level = logging.WARNING if decision == "DENIED" else logging.INFO
        self.logger.log(level, logfmt(fields))

    def event(self, event: str, **fields: object) -> None:
        """Log a non-decision event (``dial_failed``, ``bad_request``, ``tunnel_closed``...).

        Refusals (:data:`WARNING_EVENTS`) go at WARNING, so ``sandbox logs
        --level warning`` shows everything that was denied.
        """
        level = logging.WARNING if event in WARNING_EVENTS else logging.INFO
        self.logger.log(level, logfmt([("event", event), ("time", _now()), ("sandbox", self.sandbox_id), *fields.items()]))
