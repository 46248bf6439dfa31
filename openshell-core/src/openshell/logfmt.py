"""Parsing logfmt lines (``key=value``, values with spaces or quotes in double quotes).

The writer is ``openshell.supervisor.proxy.log.logfmt``; the gateway parses what
supervisors push to index it by field (``sandbox logs`` filters).
"""

from __future__ import annotations

import re

_LOGFMT = re.compile(r'([A-Za-z_][A-Za-z0-9_.-]*)=("(?:[^"\\]|\\.)*"|\S+)')


def logfmt_fields(message: str) -> dict[str, str]:
    """Parse ``key=value`` pairs (values may be double-quoted) out of a log message."""
    out: dict[str, str] = {}
    for key, value in _LOGFMT.findall(message):
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        out[key] = value
    return out
