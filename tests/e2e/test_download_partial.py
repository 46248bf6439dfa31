"""``openshell sandbox download`` when the sandbox cannot read everything, and when it fails.

Uses the session gateway of tests/conftest.py and one sandbox of its own
(``dlfix-<random>``, default policy: /sandbox and /tmp writable; /usr, /lib,
/etc readable; everything else denied by Landlock). Unreadable files are made
two ways: mode 000 inside /sandbox (the sandbox user has no capabilities) and
a world-readable file the host creates under /opt, which only Landlock
keeps from the sandbox.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

SANDBOX = f"dlfix-{uuid.uuid4().hex[:8]}"
INCOMPLETE = 3  # documented exit status of a download that skipped paths


@pytest.fixture(scope="module")
def sbx(gateway):
    gateway.cli("sandbox", "create", "--name", SANDBOX, "--detach", check=True)
    try:
        yield SANDBOX
    finally:
        gateway.cli("sandbox", "delete", SANDBOX)


def _sh(gateway, script: str) -> None:
    p = gateway.sx(SANDBOX, "sh", "-c", script)
    assert p.returncode == 0, p.stderr.decode()


def _download(gateway, path: str, dest: Path):
    return gateway.cli("sandbox", "download", SANDBOX, path, str(dest), timeout=120)


@pytest.fixture
def landlocked():
    """A host directory the sandbox can see but Landlock forbids, holding a world-readable file."""
    d = Path(f"/opt/{SANDBOX}-{uuid.uuid4().hex[:6]}")  # not /var/tmp: each sandbox has its own
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    (d / "host.txt").write_text("host\n")
    os.chmod(d / "host.txt", 0o644)
    try:
        yield d
    finally:
        shutil.rmtree(d)


# --------------------------------------------------------------------------- partial downloads


def test_unreadable_files_are_listed_and_the_rest_is_written(gateway, sbx, tmp_path):
    _sh(
        gateway,
        "mkdir -p /sandbox/part/sub /sandbox/part/locked && cd /sandbox/part && echo ok > ok.txt"
        " && echo deep > sub/deep.txt && echo s > secret.txt && echo x > locked/inner.txt"
        " && chmod 000 secret.txt locked",
    )
    out = tmp_path / "out"
    p = _download(gateway, "/sandbox/part", out)
    err = p.stderr.decode()
    assert p.returncode == INCOMPLETE, err
    assert (out / "ok.txt").read_text() == "ok\n"
    assert (out / "sub" / "deep.txt").read_text() == "deep\n"
    assert not (out / "secret.txt").exists()
    assert "/sandbox/part/secret.txt: Cannot open: Permission denied" in err
    assert "/sandbox/part/locked: Cannot open: Permission denied" in err
    assert "2 paths" in err
    assert "Exiting with failure status" not in err  # tar's summary line is not a path
    assert all(len(line) < 400 for line in err.splitlines())


def test_a_long_skipped_list_is_bounded_on_stderr(gateway, sbx, tmp_path):
    _sh(gateway, "mkdir -p /sandbox/many && cd /sandbox/many && echo ok > ok && for i in $(seq 1 30); do echo s > s$i; chmod 000 s$i; done")
    p = _download(gateway, "/sandbox/many", tmp_path / "many")
    err = p.stderr.decode()
    assert p.returncode == INCOMPLETE, err
    assert "could not read 30 paths" in err and "… and 10 more" in err
    assert err.count("Cannot open: Permission denied") == 20
    assert (tmp_path / "many" / "ok").read_text() == "ok\n"


def test_a_single_unreadable_file_exits_incomplete_and_leaves_no_empty_dest(gateway, sbx, tmp_path):
    _sh(gateway, "echo s > /sandbox/lone.txt && chmod 000 /sandbox/lone.txt")
    out = tmp_path / "lone"
    p = _download(gateway, "/sandbox/lone.txt", out)
    assert p.returncode == INCOMPLETE, p.stderr.decode()
    assert "/sandbox/lone.txt: Cannot open: Permission denied" in p.stderr.decode()
    assert not out.exists()


def test_a_landlock_denied_path_is_reported_as_skipped(gateway, sbx, tmp_path, landlocked):
    assert gateway.sx(SANDBOX, "cat", str(landlocked / "host.txt")).returncode != 0  # Landlock, not file modes
    out = tmp_path / "ll"
    p = _download(gateway, str(landlocked / "host.txt"), out)
    err = p.stderr.decode()
    assert p.returncode == INCOMPLETE, err
    assert f"{landlocked}/host.txt: Cannot open: Permission denied" in err
    assert not out.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    p = _download(gateway, str(landlocked), existing)
    assert p.returncode == INCOMPLETE, p.stderr.decode()
    assert f"{landlocked}: Cannot open: Permission denied" in p.stderr.decode()
    assert existing.is_dir()  # it was there before: kept


def test_a_complete_download_exits_0_without_a_warning(gateway, sbx, tmp_path):
    _sh(gateway, "mkdir -p /sandbox/full/d && echo a > /sandbox/full/a && echo b > /sandbox/full/d/b")
    p = _download(gateway, "/sandbox/full", tmp_path / "full")
    assert p.returncode == 0, p.stderr.decode()
    assert "warning" not in p.stderr.decode() and "could not read" not in p.stderr.decode()
    assert (tmp_path / "full" / "d" / "b").read_text() == "b\n"


# --------------------------------------------------------------------------- failures leave no empty DEST


def test_a_missing_path_leaves_no_destination_it_created(gateway, sbx, tmp_path):
    dest = tmp_path / "new" / "deeper"
    p = _download(gateway, "/sandbox/dlfix-does-not-exist", dest)
    assert p.returncode == 1 and "does not exist" in p.stderr.decode()
    assert not (tmp_path / "new").exists()
    assert tmp_path.is_dir()


def test_a_missing_path_keeps_a_destination_that_existed(gateway, sbx, tmp_path):
    empty, full = tmp_path / "empty", tmp_path / "full"
    empty.mkdir()
    full.mkdir()
    (full / "mine.txt").write_text("mine\n")
    for dest in (empty, full):
        p = _download(gateway, "/sandbox/dlfix-does-not-exist", dest)
        assert p.returncode == 1
    assert empty.is_dir() and list(empty.iterdir()) == []
    assert (full / "mine.txt").read_text() == "mine\n"


def test_a_missing_sandbox_leaves_no_destination(gateway, sbx, tmp_path):
    dest = tmp_path / "nosb"
    p = gateway.cli("sandbox", "download", "dlfix-no-such-sandbox", "/sandbox", str(dest))
    assert p.returncode == 1 and "not found" in p.stderr.decode()
    assert not dest.exists()


def test_a_lost_connection_fails_and_leaves_no_destination(gateway, sbx, tmp_path, monkeypatch):
    """The SSH transport to the real sandbox dies right after tar starts, before a byte arrives."""
    from openshell.client.sdk import OpenShellClient
    from openshell.client.ssh_tunnel import open_ssh_transport
    from openshell_cli.transfer import TransferError, download

    _sh(gateway, "mkdir -p /sandbox/lost && head -c 4000000 /dev/urandom > /sandbox/lost/big.bin")
    for key in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "OPENSHELL_GATEWAY"):
        monkeypatch.setenv(key, gateway.env[key])

    class DropsAfterExec:
        def __init__(self, transport) -> None:
            self.transport = transport

        def open_session(self):
            chan = self.transport.open_session()
            real_exec = chan.exec_command

            def exec_then_drop(cmd: str) -> None:
                real_exec(cmd)
                self.transport.close()

            chan.exec_command = exec_then_drop
            return chan

    with OpenShellClient.from_config() as client:
        transport = open_ssh_transport(client, SANDBOX)
        try:
            dest = tmp_path / "lost" / "dest"
            with pytest.raises(TransferError) as failed:
                download(DropsAfterExec(transport), "/sandbox/lost", dest)
        finally:
            transport.close()
    assert not (tmp_path / "lost").exists()
    assert "connection to the sandbox was lost" in str(failed.value)
