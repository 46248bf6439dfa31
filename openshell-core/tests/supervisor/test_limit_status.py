"""The supervisor's limit check and the status reason it reports: a full /tmp or
workdir is shown while it lasts and leaves the status once space is freed; OOM
kills and refused forks stay until newer ones replace them. (The same with real
sandboxes: tests/security/test_resource_limits.py.)"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from openshell.resources import Limits
from openshell.supervisor import mounts
from openshell.supervisor.cgroups import Events
from openshell.supervisor.main import Supervisor

TMP_FULL = "/tmp is full (1Gi): writes fail with ENOSPC"
DISK_FULL = "/sandbox is full (32Mi): writes fail with ENOSPC"


class _Link:
    """A gateway that records the READY reasons it took; ``refuse`` reports fail first."""

    def __init__(self, refuse: int = 0) -> None:
        self.reasons: list[str] = []
        self.refuse = refuse

    async def report(self, *, phase=None, reason="", pid=0, **_) -> bool:
        assert phase == "READY"
        if self.refuse:
            self.refuse -= 1
            return False
        self.reasons.append(reason)
        return True


class _Counters:
    def __init__(self) -> None:
        self.oom_kills = self.pids_max = 0

    def events(self) -> Events:
        return Events(oom_kills=self.oom_kills, pids_max=self.pids_max)


@pytest.fixture
def sup(monkeypatch, tmp_path):
    """A supervisor as far as ``_check_limits`` sees it, with a /tmp and a workdir
    whose fullness the test sets (``sup.full``: path -> bool)."""
    s = Supervisor.__new__(Supervisor)  # no gateway channel, no sandbox: only the limit check's state
    s.cfg = SimpleNamespace(sandbox_id="sbx", container=False)
    s.limits = Limits(memory=256 * 2**20, pids=64, tmp=2**30, disk=32 * 2**20)
    s.counters = _Counters()
    s.tmp_dir, s.workdir = str(tmp_path / "tmp"), str(tmp_path / "workdir")
    s._limit_events = (0, 0)
    s._tmp_full = s._workdir_full = False
    s._limit_notice = s._status_reason = ""
    s.link = _Link()
    s.full = {s.tmp_dir: False, s.workdir: False}
    monkeypatch.setattr(mounts, "full_reason", lambda path, name, size, slack=0: f"{name} is full ({size}): writes fail with ENOSPC" if s.full[path] else "")
    return s


def _check(sup) -> list[str]:
    asyncio.run(sup._check_limits())
    return sup.link.reasons


def test_a_full_tmp_leaves_the_status_once_it_is_freed(sup):
    assert _check(sup) == []  # nothing to say: no report
    sup.full[sup.tmp_dir] = True
    assert _check(sup) == [TMP_FULL]
    assert _check(sup) == [TMP_FULL]  # once
    sup.full[sup.tmp_dir] = False
    assert _check(sup) == [TMP_FULL, ""]  # the next check clears it
    assert _check(sup) == [TMP_FULL, ""]


def test_a_full_workdir_leaves_the_status_and_a_full_tmp_stays(sup):
    sup.full[sup.tmp_dir] = sup.full[sup.workdir] = True
    assert _check(sup) == [f"{TMP_FULL}; {DISK_FULL}"]
    sup.full[sup.workdir] = False
    assert _check(sup)[-1] == TMP_FULL
    sup.full[sup.tmp_dir] = False
    assert _check(sup)[-1] == ""


def test_an_oom_kill_stays_shown_when_a_full_tmp_is_freed(sup):
    sup.full[sup.tmp_dir] = True
    _check(sup)
    sup.counters.oom_kills = 1
    oom = "out of memory: 1 process(es) killed at the memory limit (256Mi)"
    assert _check(sup)[-1] == f"{oom}; {TMP_FULL}"  # the /tmp still full is not hidden by the new event
    sup.full[sup.tmp_dir] = False
    assert _check(sup)[-1] == oom
    n = len(sup.link.reasons)
    _check(sup)
    assert len(sup.link.reasons) == n  # nothing new: no report


def test_a_clear_the_gateway_did_not_take_is_sent_again(sup):
    sup.full[sup.tmp_dir] = True
    _check(sup)
    sup.full[sup.tmp_dir] = False
    sup.link.refuse = 1  # the gateway is away for the next report
    assert _check(sup) == [TMP_FULL]
    assert _check(sup) == [TMP_FULL, ""]


def _rounds(sup, monkeypatch, plan) -> list[float]:
    """Run the housekeeping loop for ``len(plan)`` rounds; before round i ``plan[i]``
    (a callable or None) changes the sandbox. Returns the waits before each round."""
    waits: list[float] = []

    async def fake_wait_for(aw, timeout):
        aw.close()  # the wait is not needed: the round happens at once
        await asyncio.sleep(0)  # the last round's limit check (a task) runs meanwhile
        waits.append(timeout)
        step = plan[len(waits) - 1]
        if step is not None:
            step()
        raise asyncio.TimeoutError

    rounds = iter(range(len(plan)))
    monkeypatch.setattr(asyncio, "wait_for", fake_wait_for)
    monkeypatch.setattr(Supervisor, "_orphaned", lambda self: next(rounds) == len(plan) - 1)
    asyncio.run(sup._housekeeping(interval=1.0, idle_interval=5.0))
    return waits


@pytest.fixture
def housekeeping(sup):
    sup.entrypoint = None
    sup._activity = asyncio.Event()
    sup.counters.usage = (4096, 2)
    sup.counters.activity = lambda: sup.counters.usage
    return sup


def test_an_idle_sandbox_is_checked_less_and_less_often(housekeeping, monkeypatch):
    assert _rounds(housekeeping, monkeypatch, [None] * 7) == [1, 1, 2, 4, 5, 5, 5]


def test_memory_or_processes_moving_bring_the_short_interval_back(housekeeping, monkeypatch):
    def grow():
        housekeeping.counters.usage = (housekeeping.counters.usage[0] + 4096, 2)

    def fork():
        housekeeping.counters.usage = (housekeeping.counters.usage[0], 3)

    # Each change is seen in the round after the wait it happened in: one short wait, then backing off again.
    waits = _rounds(housekeeping, monkeypatch, [None, None, None, None, grow, None, fork, None])
    assert waits == [1, 1, 2, 4, 5, 1, 2, 1]


def test_a_session_starting_or_a_full_tmp_brings_the_short_interval_back(housekeeping, monkeypatch):
    def session():
        housekeeping._activity.set()  # what _launch_session does, through the loop

    def tmp_full():
        housekeeping.full[housekeeping.tmp_dir] = True

    # The full /tmp is found by the check that runs after the round, and the round after
    # that sees the new status reason.
    waits = _rounds(housekeeping, monkeypatch, [None, None, None, session, None, None, tmp_full, None, None])
    assert waits == [1, 1, 2, 4, 1, 2, 4, 5, 1]
    assert housekeeping.link.reasons == [TMP_FULL]


def test_unreadable_counters_keep_the_short_interval(housekeeping, monkeypatch):
    housekeeping.counters.usage = (-1, 2)
    assert _rounds(housekeeping, monkeypatch, [None] * 4) == [1, 1, 1, 1]


def test_a_report_that_hangs_does_not_hold_up_the_rounds(housekeeping, monkeypatch):
    """A gateway that is away makes a report wait up to a call timeout; the rounds
    (and with them the orphan check) go on meanwhile, one check at a time."""
    started = []

    async def hanging_check():
        started.append(1)
        await asyncio.Event().wait()  # never answers

    housekeeping._check_limits = hanging_check
    assert _rounds(housekeeping, monkeypatch, [None] * 5) == [1, 1, 2, 4, 5]
    assert started == [1]
