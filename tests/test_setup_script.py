"""scripts/setup.sh waits (bounded, with a message) for an apt/dpkg run that holds the lock."""

from __future__ import annotations

import fcntl
import subprocess
import threading
import time
from pathlib import Path

SETUP = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"


def _wait_for_apt(lock: Path, limit: int) -> subprocess.CompletedProcess:
    body = SETUP.read_text()
    func = body[body.index("wait_for_apt() {") : body.index("\n}\n", body.index("wait_for_apt() {")) + 3]
    env = {"PATH": "/usr/bin:/bin", "OPENSHELL_APT_LOCKS": str(lock), "OPENSHELL_APT_WAIT": str(limit)}
    return subprocess.run(["bash", "-c", func + "\nwait_for_apt && echo acquired"], env=env, capture_output=True, text=True, timeout=60)


def test_waits_for_a_held_dpkg_lock_and_goes_on_when_it_is_released(tmp_path):
    lock = tmp_path / "lock-frontend"
    with open(lock, "a") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)
        release = threading.Timer(3, lambda: fcntl.lockf(held, fcntl.LOCK_UN))
        release.start()
        # lockf locks belong to the process: the script runs in another one, as apt would
        res = _wait_for_apt(lock, limit=30)
        release.join()
    assert res.returncode == 0, res.stderr
    assert "another apt/dpkg run holds its lock; waiting up to 30s" in res.stdout
    assert res.stdout.strip().endswith("acquired")


def test_gives_up_after_the_bound_with_one_line_naming_the_fix(tmp_path):
    lock = tmp_path / "lock"
    with open(lock, "a") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)
        started = time.monotonic()
        res = _wait_for_apt(lock, limit=2)
    assert res.returncode == 1
    assert time.monotonic() - started < 30
    assert res.stderr.strip() == "setup: the apt/dpkg lock is still held after 2s (see 'ps -C apt-get,dpkg,unattended-upgr'); run again when it is done"


def test_a_free_lock_is_taken_at_once_without_a_message(tmp_path):
    res = _wait_for_apt(tmp_path / "lock", limit=2)
    assert res.returncode == 0 and res.stdout.strip() == "acquired"
