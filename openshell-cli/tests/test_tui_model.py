"""What the terminal UI makes of watch items (pure functions; the views are tested end to end in tests/e2e/test_tui.py)."""

from __future__ import annotations

from openshell.client.watch import WatchEvent
from openshell_cli.tui.model import DenialCounter, age, denial_of, limits_of, log_line, next_level, printable

DENIED = {
    "event": "decision",
    "decision": "DENIED",
    "host": "tblk.test",
    "port": "8080",
    "binary": "/usr/bin/curl",
    "ancestors": "/usr/bin/bash,/usr/bin/sudo",
    "reason": "network connections not allowed by policy",
    "policy": "-",
    "error": "policy_denied",
    "method": "GET",
    "path": "/",
}


def _log(fields: dict, message: str = "event=decision …", level: str = "warning") -> WatchEvent:
    return WatchEvent("log", time=1_800_000_000.0, level=level, message=message, fields=fields)


def test_a_denied_decision_line_becomes_a_denial_with_the_explain_inputs():
    d = denial_of(_log(DENIED))
    assert d is not None
    assert (d.host, d.port, d.binary, d.ancestors) == ("tblk.test", 8080, "/usr/bin/curl", ("/usr/bin/bash", "/usr/bin/sudo"))
    line = log_line(_log(DENIED)).plain
    assert "✗ DENIED tblk.test:8080 GET / by /usr/bin/curl" in line and "[policy_denied]" in line


def test_allowed_decisions_and_other_lines_are_not_denials():
    assert denial_of(_log({**DENIED, "decision": "ALLOWED"})) is None
    assert denial_of(_log({"event": "ready"})) is None
    assert denial_of(WatchEvent("event", reason="OOMKilled", fields={"decision": "DENIED"})) is None


def test_hostile_fields_never_reach_the_terminal_raw_and_are_bounded():
    evil = "\x1b]52;c;ZXZpbA==\x07\x1b[2J\r\x9b31m"
    d = denial_of(_log({**DENIED, "host": evil * 100, "port": "99999", "binary": evil}))
    assert d is not None and d.port == 0
    for text in (d.host, d.binary, log_line(_log({}, message=evil)).plain):
        assert not any(ord(c) < 0x20 and c not in "\t\n" or 0x7F <= ord(c) < 0xA0 for c in text), repr(text)
    assert len(d.host) <= 254
    assert printable("a" * 10, 4) == "aaaa…"
    assert printable("tab\tand\nnewline") == "tab\tand\nnewline"


def test_limits_come_from_the_supervisor_limits_line():
    ev = _log({"event": "limits", "cpu": "unlimited", "memory": "8Gi", "pids": "2048", "sandbox": "x"}, level="info")
    assert limits_of(ev) == {"cpu": "unlimited", "memory": "8Gi", "pids": "2048"}
    assert limits_of(_log(DENIED)) is None


def test_the_denial_count_covers_the_last_minute_only():
    c = DenialCounter()
    for t in (100.0, 130.0, 159.0):
        c.add(t)
    assert c.recent(now=160.0) == 3
    assert c.recent(now=195.0) == 1  # only 159 is within 60 s of 195
    assert c.recent(now=300.0) == 0


def test_age_and_level_cycle():
    assert [age(1000.0, now=n) for n in (1000.0, 1042.0, 1000.0 + 300, 1000.0 + 7200, 1000.0 + 3 * 86400)] == ["0s", "42s", "5m", "2h", "3d"]
    assert age(0.0) == ""
    assert [next_level(x) for x in ("", "info", "warning", "error", "bogus")] == ["info", "warning", "error", "", ""]
