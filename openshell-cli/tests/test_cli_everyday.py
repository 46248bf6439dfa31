"""Everyday CLI behaviour with the real ``openshell`` program and a real gateway:
Ctrl-C during ``sandbox create``, ``--no-keep``, gateway names, ``--debug``
anywhere, one-line errors, ``exec --timeout``, scp-like transfer naming and
shell completion.

One gateway on a free loopback port (config and state under tmp) and one
sandbox serve the module; both are removed even when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

OPENSHELL = str(Path(sys.executable).with_name("openshell"))
GATEWAY = "evcli"
NAME = "ev-cli"


class Env:
    def __init__(self, base: Path, gateway: str | None = GATEWAY) -> None:
        self.base = base
        self.env = dict(os.environ)
        self.env.update(XDG_CONFIG_HOME=str(base / "config"), XDG_STATE_HOME=str(base / "state"))
        self.env.pop("OPENSHELL_STATE_DIR", None)
        self.env.pop("OPENSHELL_GATEWAY", None)
        if gateway:
            self.env["OPENSHELL_GATEWAY"] = gateway

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([OPENSHELL, *args], env=self.env, capture_output=True, timeout=timeout)

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess:
        p = self.cli(*args, **kw)
        assert p.returncode == 0, f"openshell {' '.join(args)} exited {p.returncode}: {p.stderr.decode()}"
        return p

    def sandboxes(self) -> set[str]:
        return {s["name"] for s in json.loads(self.ok("sandbox", "list", "-o", "json").stdout)}


@pytest.fixture(scope="module")
def env(tmp_path_factory, free_port, kill_gateways):
    if os.geteuid() != 0:
        pytest.skip("needs root (sandboxes use namespaces, Landlock, seccomp)")
    e = Env(tmp_path_factory.mktemp("ev-cli"))
    e.ok("gateway", "start", GATEWAY, "--port", str(free_port()), timeout=60)
    try:
        e.ok("sandbox", "create", "--name", NAME, "--detach")
        yield e
    finally:
        e.cli("sandbox", "delete", "--all", timeout=120)
        e.cli("gateway", "stop", GATEWAY, timeout=60)
        kill_gateways(e.base / "state")


def _default_sigint() -> None:
    # a background test run may inherit SIGINT ignored; the CLI must see it as a user would
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# --------------------------------------------------------------------------- Ctrl-C and --no-keep


@pytest.mark.parametrize("delay", [0.3, 0.45, 0.55, 0.7, 1.2, 2.0])
def test_ctrl_c_during_create_prints_no_traceback_and_leaves_no_sandbox(env, delay):
    name = f"ev-int-{str(delay).replace('.', '-')}"
    proc = subprocess.Popen(
        [OPENSHELL, "sandbox", "create", "--name", name, "--", "sleep", "60"],
        env=env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_default_sigint,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    text = err.decode(errors="replace")
    assert "Traceback" not in text, text
    assert proc.returncode == 130, text
    if f"sandbox {name} is READY" in text:
        # Ctrl-C reached the running COMMAND: the sandbox stays (that is what --no-keep is for), and says so
        assert f"sandbox {name} is kept: delete it with 'openshell sandbox delete {name}'" in text
        env.cli("sandbox", "delete", name)
        return
    assert name not in env.sandboxes(), text


def test_ctrl_c_while_create_uploads_deletes_the_half_created_sandbox(env, tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "zeros", "wb") as fh:  # sparse: cheap here, slow enough to send
        fh.truncate(256 * 1024 * 1024)
    name = "ev-int-upload"
    proc = subprocess.Popen(
        [OPENSHELL, "sandbox", "create", "--name", name, "--upload", f"{big}:/sandbox/big", "--", "true"],
        env=env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_default_sigint,
    )
    try:
        for _ in range(600):  # the sandbox exists, so the upload is next
            if name in env.sandboxes():
                break
            time.sleep(0.1)
        assert proc.poll() is None, "create finished before Ctrl-C; the upload was too fast for this test"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.decode(errors="replace")
    assert "Traceback" not in text and proc.returncode == 130, text
    assert f"interrupted: deleting sandbox {name}" in text and f"deleted sandbox {name}" in text
    assert name not in env.sandboxes()


def test_a_failed_upload_in_create_says_the_sandbox_is_kept_and_how_to_go_on(env, tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "zeros", "wb") as fh:  # sparse here, 64 MiB of zeros on the wire: more than --disk
        fh.truncate(64 * 1024 * 1024)
    small = tmp_path / "small dir"
    small.mkdir()
    (small / "f").write_text("f")
    name = "ev-up-full"
    try:
        p = env.cli(
            "sandbox", "create", "--name", name, "--disk", "16Mi", "--no-git-ignore",
            "--upload", f"{big}:/sandbox/big", "--upload", f"{small}:/sandbox/small", "--", "touch", "/sandbox/ran",
        )  # fmt: skip
        text = p.stderr.decode(errors="replace")
        assert p.returncode == 1 and "Traceback" not in text, text
        assert "/sandbox ran out of space" in text, text
        assert f"sandbox {name} is kept (READY) and nothing was run in it" in text, text
        # Every upload not done, with the options this create had (the gateway came from OPENSHELL_GATEWAY).
        where = f" --gateway {GATEWAY}"
        retry = (
            f"upload again with: openshell sandbox upload {name} {big} /sandbox/big --no-git-ignore{where};"
            f" openshell sandbox upload {name} '{small}' /sandbox/small --no-git-ignore{where} (or delete it: openshell sandbox delete {name}{where})"
        )
        assert retry in text, text
        assert name in env.sandboxes()
        assert env.cli("sandbox", "exec", name, "--", "test", "-e", "/sandbox/ran").returncode == 1  # COMMAND never ran
    finally:
        env.cli("sandbox", "delete", name)
    # With --no-keep the sandbox goes, and nothing claims it is kept.
    p = env.cli("sandbox", "create", "--name", name, "--no-keep", "--disk", "16Mi", "--upload", f"{big}:/sandbox/big", "--", "true")
    text = p.stderr.decode(errors="replace")
    assert p.returncode == 1 and "is kept" not in text and f"upload failed: deleting sandbox {name}" in text and f"deleted sandbox {name}" in text, text
    assert name not in env.sandboxes()


def test_ctrl_c_while_the_command_runs_with_no_keep_deletes_the_sandbox(env):
    name = "ev-int-nokeep"
    proc = subprocess.Popen(
        [OPENSHELL, "sandbox", "create", "--name", name, "--no-keep", "--", "sleep", "60"],
        env=env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_default_sigint,
    )
    try:
        for _ in range(600):  # the command runs once the sandbox is READY
            if name in env.sandboxes() and json.loads(env.ok("sandbox", "get", name, "-o", "json").stdout)["phase"] == "READY":
                break
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.decode(errors="replace")
    assert "Traceback" not in text and proc.returncode == 130, text
    assert f"deleted sandbox {name}" in text
    assert name not in env.sandboxes()


def test_no_keep_deletes_the_sandbox_and_exits_with_the_command_code(env):
    p = env.cli("sandbox", "create", "--name", "ev-nokeep", "--no-keep", "--", "sh", "-c", "echo hi; exit 7")
    assert p.returncode == 7, p.stderr
    assert p.stdout == b"hi\n"
    assert "ev-nokeep" not in env.sandboxes()


def test_without_no_keep_the_sandbox_stays(env):
    p = env.cli("sandbox", "create", "--name", "ev-keep", "--", "true")
    try:
        assert p.returncode == 0, p.stderr
        assert "ev-keep" in env.sandboxes()
    finally:
        env.cli("sandbox", "delete", "ev-keep")


def test_no_keep_without_a_command_is_a_usage_error(env):
    p = env.cli("sandbox", "create", "--name", "ev-nokeep-d", "--no-keep", "--detach")
    assert p.returncode == 2 and b"--no-keep needs a COMMAND" in p.stderr
    assert "ev-nokeep-d" not in env.sandboxes()


# --------------------------------------------------------------------------- names, --debug, errors


def test_gateway_name_is_accepted_as_an_argument_or_option_but_not_two_different(env):
    by_arg = json.loads(env.ok("gateway", "status", GATEWAY, "-o", "json").stdout)
    by_opt = json.loads(env.ok("gateway", "status", "--name", GATEWAY, "-o", "json").stdout)
    assert by_arg["name"] == by_opt["name"] == GATEWAY and by_arg["status"] == "running"
    assert json.loads(env.ok("gateway", "info", GATEWAY, "--name", GATEWAY, "-o", "json").stdout)["name"] == GATEWAY
    p = env.cli("gateway", "stop", GATEWAY, "--name", "other")
    assert p.returncode == 2 and b"gateway named twice" in p.stderr
    assert json.loads(env.ok("gateway", "status", GATEWAY, "-o", "json").stdout)["status"] == "running"


def test_debug_works_after_the_subcommand(env):
    p = env.ok("sandbox", "list", "--debug", "-o", "json")
    assert NAME in {s["name"] for s in json.loads(p.stdout)}
    quiet = env.cli("sandbox", "get", "ev-no-such")
    assert quiet.returncode == 1 and b"Traceback" not in quiet.stderr
    loud = env.cli("sandbox", "get", "ev-no-such", "--debug")
    assert b"Traceback" in loud.stderr and b"SandboxNotFound" in loud.stderr
    # after '--' it belongs to the command in the sandbox
    assert env.ok("sandbox", "exec", NAME, "--", "echo", "--debug").stdout == b"--debug\n"


def test_policy_explain_with_a_missing_file_is_one_line_naming_it(env):
    p = env.cli("policy", "explain", "--policy", "nope.yaml", "--binary", "/usr/bin/curl", "--host", "a.example.test", "--port", "80")
    err = p.stderr.decode()
    assert p.returncode == 1
    assert err.count("\n") == 1 and "nope.yaml" in err and "No such file" in err and "Errno" not in err


def test_exec_timeout_exits_124_with_one_line(env):
    p = env.cli("sandbox", "exec", NAME, "--timeout", "1", "--", "sleep", "30")
    assert p.returncode == 124
    assert p.stderr.decode() == f"openshell: command timed out after 1 s in sandbox '{NAME}' (exit 124)\n"
    # a command that exits 124 by itself is not called a timeout
    p = env.cli("sandbox", "exec", NAME, "--timeout", "30", "--", "sh", "-c", "exit 124")
    assert p.returncode == 124 and b"timed out" not in p.stderr


def test_destroying_the_active_gateway_points_at_gateway_select(tmp_path, free_port, kill_gateways):
    e = Env(tmp_path, gateway=None)
    try:
        e.ok("gateway", "start", "evkeep", "--port", str(free_port()), timeout=60)
        e.ok("gateway", "start", "evgone", "--port", str(free_port()), timeout=60)
        p = e.ok("gateway", "destroy", "evgone", "--yes", timeout=60)
        assert b"openshell gateway select NAME" in p.stderr and b"evkeep" in p.stderr
        p = e.cli("sandbox", "list")
        assert p.returncode == 1
        assert p.stderr.decode() == "error: no active gateway; run 'openshell gateway select NAME' with one of: evkeep\n"
    finally:
        kill_gateways(tmp_path / "state")


# --------------------------------------------------------------------------- transfers


def test_upload_of_a_file_to_a_missing_destination_names_the_file(env, tmp_path):
    lib = tmp_path / "file.so"
    lib.write_bytes(b"\x7fELF-ish\n")
    p = env.ok("sandbox", "upload", NAME, str(lib), "/sandbox/renamed.so")
    assert b"uploaded 1 file " in p.stderr
    got = env.ok("sandbox", "exec", NAME, "--", "sh", "-c", "test -f /sandbox/renamed.so && cat /sandbox/renamed.so")
    assert got.stdout == b"\x7fELF-ish\n"
    # an existing directory still receives the file inside it
    env.ok("sandbox", "exec", NAME, "--", "mkdir", "-p", "/sandbox/libdir")
    env.ok("sandbox", "upload", NAME, str(lib), "/sandbox/libdir")
    assert env.ok("sandbox", "exec", NAME, "--", "cat", "/sandbox/libdir/file.so").stdout == b"\x7fELF-ish\n"
    # a trailing slash means a directory, created when missing
    env.ok("sandbox", "upload", NAME, str(lib), "/sandbox/newdir/")
    assert env.ok("sandbox", "exec", NAME, "--", "cat", "/sandbox/newdir/file.so").stdout == b"\x7fELF-ish\n"


def test_download_of_a_file_to_a_missing_local_path_names_the_file(env, tmp_path):
    env.ok("sandbox", "exec", NAME, "--", "sh", "-c", "mkdir -p /sandbox/dl && echo one > /sandbox/dl/a.txt && echo two > /sandbox/dl/b.txt")
    target = tmp_path / "copy.txt"
    p = env.ok("sandbox", "download", NAME, "/sandbox/dl/a.txt", str(target))
    assert target.read_text() == "one\n" and b"downloaded 1 file " in p.stderr
    into = tmp_path / "existing"
    into.mkdir()
    env.ok("sandbox", "download", NAME, "/sandbox/dl/a.txt", str(into))
    assert (into / "a.txt").read_text() == "one\n"
    p = env.ok("sandbox", "download", NAME, "/sandbox/dl", str(tmp_path / "tree"))
    assert b"downloaded 2 files " in p.stderr
    assert (tmp_path / "tree" / "b.txt").read_text() == "two\n"


# --------------------------------------------------------------------------- completion


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script_click_generates(shell):
    p = subprocess.run([OPENSHELL, "completion", shell], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert b"_OPENSHELL_COMPLETE" in p.stdout
    env = dict(os.environ, _OPENSHELL_COMPLETE=f"{shell}_source")
    assert subprocess.run([OPENSHELL], env=env, capture_output=True, timeout=60).stdout == p.stdout


def test_bash_completion_completes_subcommands():
    env = dict(os.environ, _OPENSHELL_COMPLETE="bash_complete", COMP_WORDS="openshell sandb", COMP_CWORD="1")
    p = subprocess.run([OPENSHELL], env=env, capture_output=True, timeout=60)
    assert p.stdout.decode().split() == ["plain,sandbox"]
