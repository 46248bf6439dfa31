"""The launcher itself: fails closed (exit 126, nothing executed), exact environment,
spec never in argv/env, PTY sessions, missing-path handling of Landlock."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from openshell.plugin import IsolationContext, IsolationError
from openshell.supervisor.launcher import (
    EXIT_LAUNCH_FAILED,
    EXIT_NOT_FOUND,
    LaunchSpec,
    prepare_layers,
    spawn,
)
from openshell_plugin_netns import cleanup_sandbox


@pytest.fixture
def checks_policy(launch_checks_policy):
    return launch_checks_policy


def _marker_argv(box, name: str = "ran") -> tuple[list[str], str]:
    """argv that leaves a file in the workdir when it runs, and that file's host path."""
    return ["sh", "-c", f"touch /sandbox/{name}; echo ran"], os.path.join(box.dirs.workdir, name)


def _assert_failed_closed(res, marker: str, step: str) -> None:
    assert res.returncode == EXIT_LAUNCH_FAILED, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"openshell-launcher: {step}"), res.stderr
    assert res.stdout == ""
    assert not os.path.exists(marker)


def test_missing_layer_fails_closed(launch_sandbox) -> None:
    argv, marker = _marker_argv(launch_sandbox)
    res = launch_sandbox.run(argv, layers=["netns", "landlock", "seccomp", "no-such-layer"])
    _assert_failed_closed(res, marker, "load layer no-such-layer:")


def test_plugin_of_another_kind_is_not_a_layer(launch_sandbox) -> None:
    # "opa" is a policy engine, not an isolation layer: the lookup is per kind.
    argv, marker = _marker_argv(launch_sandbox)
    res = launch_sandbox.run(argv, layers=["opa"])
    _assert_failed_closed(res, marker, "load layer opa:")


def test_hard_requirement_missing_path_fails_closed_and_names_it(launch_factory, checks_policy) -> None:
    missing = f"/nonexistent-{uuid.uuid4().hex[:8]}"
    policy = checks_policy(read_only=["/usr", "/lib", "/etc", "/proc", missing])
    box = launch_factory(policy=policy)
    argv, marker = _marker_argv(box)
    res = box.run(argv)
    _assert_failed_closed(res, marker, "layer landlock")
    assert missing in res.stderr


def test_best_effort_missing_path_is_skipped(launch_factory, checks_policy) -> None:
    missing = f"/nonexistent-{uuid.uuid4().hex[:8]}"
    policy = checks_policy(read_only=["/usr", "/lib", "/etc", "/proc", missing], compatibility="best_effort")
    box = launch_factory(policy=policy)
    argv, marker = _marker_argv(box)
    res = box.run(argv)
    assert res.returncode == 0, res.stderr
    assert os.path.exists(marker)
    assert res.stderr == ""  # the supervisor logs it (prepare), not the user's stream
    # ... and the rest is still enforced.
    assert box.run(["sh", "-c", "ls /root"]).returncode != 0


def test_missing_network_namespace_fails_closed(launch_sandbox) -> None:
    argv, marker = _marker_argv(launch_sandbox)
    cleanup_sandbox(launch_sandbox.ctx.sandbox_id)
    res = launch_sandbox.run(argv)
    _assert_failed_closed(res, marker, "layer netns:")


def test_root_uid_in_context_fails_closed(launch_sandbox) -> None:
    argv, marker = _marker_argv(launch_sandbox)
    launch_sandbox.ctx.uid = 0
    launch_sandbox.ctx.gid = 0
    res = launch_sandbox.run(argv)
    _assert_failed_closed(res, marker, "resolve user:")


def test_root_in_policy_fails_closed(launch_factory, checks_policy) -> None:
    policy = checks_policy()
    policy["process"] = {"run_as_user": "root", "run_as_group": "root"}
    box = launch_factory(policy=policy)
    argv, marker = _marker_argv(box)
    _assert_failed_closed(box.run(argv), marker, "resolve user:")


def test_bad_cwd_fails_closed(launch_sandbox) -> None:
    argv, marker = _marker_argv(launch_sandbox)
    _assert_failed_closed(launch_sandbox.run(argv, cwd="/root"), marker, "chdir:")


def test_malformed_spec_fails_closed(launch_root) -> None:
    read_fd, write_fd = os.pipe()
    from openshell.supervisor.launcher import launcher_argv

    proc = subprocess.Popen(launcher_argv(read_fd), pass_fds=(read_fd,), env={}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(read_fd)
    os.write(write_fd, b'{"ctx": {"sandbox_id": "x", "policy": {}}, "argv": []}')
    os.close(write_fd)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_LAUNCH_FAILED
    assert err.decode().startswith("openshell-launcher: read spec:") and out == b""


def test_unknown_command_exits_127(launch_sandbox) -> None:
    res = launch_sandbox.run(["no-such-program-xyz"])
    assert res.returncode == EXIT_NOT_FOUND
    assert "openshell-launcher: exec: no-such-program-xyz: command not found" in res.stderr


def test_environment_is_exactly_the_spec(launch_sandbox, monkeypatch) -> None:
    monkeypatch.setenv("OPENSHELL_SUPERVISOR_SECRET", "must-not-leak")
    env = {"PATH": "/usr/bin:/bin", "ONLY": "this"}
    res = launch_sandbox.run(["/usr/bin/env"], env=env)
    assert res.returncode == 0, res.stderr
    assert dict(line.split("=", 1) for line in res.stdout.splitlines()) == env


def test_spec_travels_over_a_pipe_not_argv_or_env(launch_sandbox) -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex
    spec = launch_sandbox.spec(["sleep", "30"], env={"PATH": "/usr/bin:/bin", "TOKEN": secret})
    proc = spawn(spec, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            cmdline = f.read()
        assert secret.encode() not in cmdline
        assert proc.args[-2:][0] == "--spec-fd" and secret not in " ".join(proc.args)
    finally:
        proc.kill()
        proc.wait()


def test_pty_session_gets_controlling_terminal(launch_sandbox) -> None:
    master, slave = os.openpty()
    try:
        code = (
            "import json, os\n"
            "print(json.dumps({'tty': os.isatty(0), 'leader': os.getsid(0) == os.getpid(),"
            " 'fg': os.tcgetpgrp(0) == os.getpgrp(), 'ttyname': os.ttyname(0)}))"
        )
        spec = launch_sandbox.spec(["/usr/bin/python3", "-c", code], tty=True)
        proc = spawn(spec, stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        slave = -1
        data = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO once the last slave fd closes
                break
            if not chunk:
                break
            data += chunk
        assert proc.wait(timeout=30) == 0, data
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    out = json.loads(data.decode().strip().splitlines()[-1])
    assert out["tty"] and out["leader"] and out["fg"]


def test_prepare_layers_unknown_layer_raises_and_builds_nothing(launch_root, checks_policy) -> None:
    ctx = IsolationContext(sandbox_id=uuid.uuid4().hex, policy=checks_policy(), extra={"netns": {"index": 197}})
    with pytest.raises(IsolationError, match="no-such-layer"):
        prepare_layers(ctx, ["netns", "no-such-layer"])
    assert cleanup_sandbox(ctx.sandbox_id) == []


def test_launch_spec_round_trips_through_json(launch_root) -> None:
    from openshell.supervisor.mounts import Mount

    ctx = IsolationContext(sandbox_id="abc", policy={"version": 1}, netns="osb-abc", uid=5, gid=6, extra={"netns": {"index": 3}})
    spec = LaunchSpec(ctx=ctx, argv=["a", "b"], env={"K": "V"}, cwd="/x", mounts=[Mount("/s", "/t", True)], layers=["netns"], tty=True)
    assert LaunchSpec.from_json(spec.to_json()) == spec


def test_prepare_logs_missing_paths_in_the_supervisor(launch_factory, checks_policy, caplog) -> None:
    missing = f"/nonexistent-{uuid.uuid4().hex[:8]}"
    caplog.set_level("WARNING", logger="openshell.isolation.landlock")
    launch_factory(policy=checks_policy(read_only=["/usr", "/etc", missing], compatibility="best_effort"))
    assert any(missing in r.getMessage() for r in caplog.records)
