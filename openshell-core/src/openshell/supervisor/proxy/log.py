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

import asyncio
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
        self._pending: list[tuple[int, list[tuple[str, object]]]] = []  # deferred lines, in order

    def flush(self) -> None:
        """Write the deferred lines (``decision(defer=True)``) now, in order. Idempotent."""
        pending, self._pending = self._pending, []
        for level, fields in pending:
            self.logger.log(level, logfmt(fields))

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
        defer: bool = False,
    ) -> None:
        """Log one decision. ``decision`` is ``ALLOWED``, ``DENIED`` or ``AUDIT``.

        ``defer``: format and write the line at the event loop's next turn (the
        time printed is still now), so it is done while the connection waits for
        its upstream dial instead of before it. Any later line of this log, and
        ``flush()``, writes deferred lines first, so the order never changes; the
        proxy flushes before it answers the client.
        """
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
        if defer:
            self._pending.append((level, fields))
            if len(self._pending) == 1:
                try:
                    asyncio.get_running_loop().call_soon(self.flush)
                except RuntimeError:  # no loop running (tests calling it directly)
                    self.flush()
            return
        if self._pending:
            self.flush()
        self.logger.log(level, logfmt(fields))

    def event(self, event: str, **fields: object) -> None:
        """Log a non-decision event (``dial_failed``, ``bad_request``, ``tunnel_closed``...).

        Refusals (:data:`WARNING_EVENTS`) go at WARNING, so ``sandbox logs
        --level warning`` shows everything that was denied.
        """
        level = logging.WARNING if event in WARNING_EVENTS else logging.INFO
        if self._pending:
            self.flush()
        self.logger.log(level, logfmt([("event", event), ("time", _now()), ("sandbox", self.sandbox_id), *fields.items()]))
