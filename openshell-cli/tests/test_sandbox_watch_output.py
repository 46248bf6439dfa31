"""How ``openshell sandbox watch`` prints each kind of stream item (text output)."""

from __future__ import annotations

from openshell.client.sdk import Sandbox
from openshell.client.watch import WatchEvent
from openshell_cli.commands.sandbox_state import watch_line


def test_each_kind_is_one_line_naming_what_happened():
    sb = Sandbox(id="i", name="demo", workspace="default", phase="READY", reason="out of memory: 1 process(es) killed", policy_version=2)
    assert watch_line(WatchEvent("status", time=0.0, sandbox=sb)).endswith(" status  READY policy v2: out of memory: 1 process(es) killed")
    assert watch_line(WatchEvent("log", time=1.0, level="warning", message="event=oom_kill count=1")).endswith(" log     WARNING event=oom_kill count=1")
    ev = WatchEvent("event", time=1.0, source="supervisor", type="Warning", reason="OOMKilled", message="out of memory")
    assert watch_line(ev).endswith(" event   Warning OOMKilled: out of memory (supervisor)")
    lagged = watch_line(WatchEvent("lagged", dropped=42, message="lagged: ..."))
    assert lagged.endswith(" lagged  42 item(s) dropped: this watcher fell behind")
    for ev in (WatchEvent("status", sandbox=sb), WatchEvent("lagged", dropped=1)):
        assert "\n" not in watch_line(ev)


def test_lagged_to_dict_says_how_many_were_dropped():
    assert WatchEvent("lagged", dropped=7, message="m").to_dict() == {"kind": "lagged", "time": 0.0, "message": "m", "dropped": 7}
