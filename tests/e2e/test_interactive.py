"""Interactive access end to end: ``sandbox connect`` and ``exec --tty`` under a real PTY (pexpect),
and isolation checks I03 and I08 repeated from SSH sessions (the real ``ssh`` program and ``connect``).

Uses the session gateway of tests/conftest.py and its own test host ``iaup``
(10.199.30.2) as the upstream of the isolation-checks policy.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pexpect
import pytest
from conftest import OPENSHELL, cases_dir  # noqa: E402 - tests/ is on sys.path (conftest)

SANDBOX = "ia-interactive"
UPSTREAM_IP = "10.199.30.2"
UPSTREAM = "http://up.example.test:8080/"
PROMPT = r"\$ $"


@pytest.fixture(scope="module")
def iaup():
    from openshell.testhost import TestHost

    with TestHost("iaup", UPSTREAM_IP) as host:
        host.serve_http(8080)
        yield host


@pytest.fixture(scope="module")
def sandbox(gateway, iaup, tmp_path_factory):
    text = (cases_dir() / "isolation-checks.md").read_text()
    policy = tmp_path_factory.mktemp("ia") / "policy.yaml"
    policy.write_text(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))
    gateway.cli("sandbox", "delete", SANDBOX)
    gateway.cli("sandbox", "create", "--name", SANDBOX, "--policy", str(policy), "--add-host", f"up.example.test:{UPSTREAM_IP}", "--detach", check=True)
    cfg = tmp_path_factory.mktemp("ia-ssh") / "ssh_config"
    cfg.write_bytes(gateway.cli("sandbox", "ssh-config", SANDBOX, check=True).stdout)
    yield SANDBOX, cfg
    gateway.cli("sandbox", "delete", SANDBOX)


def _spawn(gateway, *args: str, rows: int = 24, cols: int = 80) -> pexpect.spawn:
    return pexpect.spawn(OPENSHELL, list(args), env=gateway.env, dimensions=(rows, cols), timeout=30)


def _finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def test_connect_gives_a_pty_that_follows_the_window_and_returns_the_exit_status(gateway, sandbox):
    child = _spawn(gateway, "sandbox", "connect", sandbox[0], rows=30, cols=100)
    try:
        child.expect(PROMPT)
        child.sendline("stty size; id -un; tty")
        child.expect(r"30 100\r\n")
        child.expect(r"sandbox\r\n")
        child.expect(r"/dev/pts/\d+")
        child.setwinsize(41, 123)  # our terminal changes size → SIGWINCH → window-change
        time.sleep(0.5)
        child.sendline("stty size")
        child.expect(r"41 123\r\n")
        child.sendline("exit 7")
        assert _finish(child) == 7
    finally:
        child.close(force=True)


def test_ctrl_c_reaches_the_remote_process_not_the_client(gateway, sandbox):
    child = _spawn(gateway, "sandbox", "connect", sandbox[0])
    try:
        child.expect(PROMPT)
        child.sendline("sleep 60")
        time.sleep(1.0)
        t0 = time.monotonic()
        child.sendintr()  # Ctrl-C from our terminal
        child.expect(PROMPT, timeout=10)  # the remote sleep died; our session lives on
        assert time.monotonic() - t0 < 5
        child.sendline("echo status=$?")
        child.expect(r"status=130")
        child.sendline("exit")
        assert _finish(child) == 0
    finally:
        child.close(force=True)


def test_exec_tty_streams_stdin_to_a_pty_and_returns_the_exit_code(gateway, sandbox):
    child = _spawn(
        gateway,
        "sandbox",
        "exec",
        "--tty",
        sandbox[0],
        "--",
        "sh",
        "-c",
        "stty size; [ -t 0 ] && echo is-tty; read line; echo got-$line; exit 4",
        rows=33,
        cols=90,
    )
    try:
        child.expect(r"33 90")
        child.expect("is-tty")
        child.sendline("hello")
        child.expect("got-hello")
        assert _finish(child) == 4
    finally:
        child.close(force=True)


def test_exec_without_tty_keeps_stdout_and_stderr_apart(gateway, sandbox):
    p = gateway.sx(sandbox[0], "sh", "-c", "[ -t 1 ] && echo tty; echo out; echo err >&2; exit 2")
    assert (p.returncode, p.stdout, p.stderr) == (2, b"out\n", b"err\n")


# --------------------------------------------------------------------------- I03 and I08 from SSH sessions

I03_I08 = (
    "import errno, json, urllib.request as u\n"
    "res = []\n"
    "for path in ('/etc/openshell-probe', '/usr/probe'):\n"
    " try:\n  open(path, 'w'); res.append('CREATED')\n except OSError as e: res.append(errno.errorcode[e.errno])\n"
    "res.append(len(open('/etc/hostname').read()) > 0)\n"
    f"try:\n u.urlopen('{UPSTREAM}'); res.append(200)\n"
    "except Exception as e:\n res.append(e.code); res.append(json.loads(e.read())['error'])\n"
    "print(json.dumps(res))\n"
)


def _assert_i03_i08(result: list) -> None:
    assert result[0] in ("EACCES", "EPERM") and result[1] in ("EACCES", "EPERM"), result  # I03
    assert result[2] is True  # I03: reading /etc/hostname works
    assert result[3:] == [403, "policy_denied"], result  # I08: python3 is not in the rule's binaries


def test_i03_and_i08_hold_in_a_real_ssh_session(gateway, sandbox):
    name, cfg = sandbox
    p = subprocess.run(["ssh", "-F", str(cfg), f"openshell-{name}", "python3", "-"], input=I03_I08.encode(), env=gateway.env, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    _assert_i03_i08(json.loads(p.stdout))
    # curl, which the rule names, is allowed from the same SSH session (the policy applies, not a blanket deny)
    p = subprocess.run(
        ["ssh", "-F", str(cfg), f"openshell-{name}", f"curl -sS -o /dev/null -w '%{{http_code}}' {UPSTREAM}"], env=gateway.env, capture_output=True, timeout=60
    )
    assert p.stdout == b"200", p.stderr


def test_i03_and_i08_hold_in_an_interactive_connect_session(gateway, sandbox):
    child = _spawn(gateway, "sandbox", "connect", sandbox[0], cols=200)
    try:
        child.expect(PROMPT)
        child.sendline("cat > /tmp/ia_check.py <<'EOF'\n" + I03_I08 + "EOF")
        child.expect(PROMPT)
        child.sendline("python3 /tmp/ia_check.py")
        child.expect(r"(\[\"E[^\r\n]*\])\r\n")
        _assert_i03_i08(json.loads(child.match.group(1)))
        child.sendline("exit")
        assert _finish(child) == 0
    finally:
        child.close(force=True)
