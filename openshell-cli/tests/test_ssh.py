"""SSH through the gateway with the real OpenSSH programs, upload/download, create --upload, forwards.

One gateway (started with the real ``openshell`` CLI on a free loopback port,
config and state under tmp) and one sandbox serve the whole module; both are
removed even when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

OPENSHELL = str(Path(sys.executable).with_name("openshell"))
NAME = "ia-cli"


class Env:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.env = dict(os.environ)
        self.env.update(XDG_CONFIG_HOME=str(base / "config"), XDG_STATE_HOME=str(base / "state"), OPENSHELL_GATEWAY="iacli")
        self.env.pop("OPENSHELL_STATE_DIR", None)

    def cli(self, *args: str, input: bytes | None = None, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([OPENSHELL, *args], env=self.env, input=input, capture_output=True, timeout=timeout, cwd=cwd)

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess:
        p = self.cli(*args, **kw)
        assert p.returncode == 0, f"openshell {' '.join(args)} exited {p.returncode}: {p.stderr.decode()}"
        return p

    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, timeout=kw.pop("timeout", 60), **kw)


@pytest.fixture(scope="module")
def env(tmp_path_factory, free_port):
    if os.geteuid() != 0:
        pytest.skip("needs root (sandboxes use namespaces, Landlock, seccomp)")
    e = Env(tmp_path_factory.mktemp("ia-cli"))
    e.ok("gateway", "start", "--name", "iacli", "--port", str(free_port()), timeout=60)
    try:
        e.ok("sandbox", "create", "--name", NAME, "--detach")
        cfg = e.base / "ssh_config"
        cfg.write_bytes(e.ok("sandbox", "ssh-config", NAME).stdout)
        e.ssh_config = cfg
        yield e
    finally:
        for f in json.loads(e.cli("forward", "list", "-o", "json").stdout or b"[]"):
            e.cli("forward", "stop", str(f["port"]), f["sandbox"])
        e.cli("sandbox", "delete", "--all", timeout=120)
        e.cli("gateway", "stop", "--name", "iacli", timeout=60)


def _ssh(env, *args: str, **kw) -> subprocess.CompletedProcess:
    return env.run(["ssh", "-F", str(env.ssh_config), *args], **kw)


def _sx(env, *argv: str) -> subprocess.CompletedProcess:
    return env.cli("sandbox", "exec", NAME, "--", *argv)


# --------------------------------------------------------------------------- OpenSSH through ssh-proxy


def test_ssh_config_prints_a_host_block_using_ssh_proxy(env):
    text = env.ssh_config.read_text()
    assert text.startswith(f"Host openshell-{NAME}\n")
    assert f"ssh-proxy --name {NAME} --gateway iacli" in text
    assert "User sandbox" in text


def test_ssh_config_for_an_unknown_sandbox_is_a_one_line_error(env):
    p = env.cli("sandbox", "ssh-config", "no-such-sandbox")
    assert p.returncode == 1
    assert p.stderr.decode().count("\n") == 1 and "not found" in p.stderr.decode()


def test_real_ssh_runs_a_command_with_exit_code_and_separate_streams(env):
    p = _ssh(env, f"openshell-{NAME}", "id -un; pwd; echo to-stderr >&2; exit 3")
    assert p.returncode == 3, p.stderr
    assert p.stdout.decode().split() == ["sandbox", "/sandbox"]
    assert p.stderr.decode().strip() == "to-stderr"


def test_real_ssh_forwards_stdin(env):
    p = _ssh(env, f"openshell-{NAME}", "wc -c", input=b"x" * 100000)
    assert p.returncode == 0 and p.stdout.decode().strip() == "100000"


def test_real_scp_copies_both_ways(env, tmp_path):
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(300_000))
    base = ["scp", "-F", str(env.ssh_config)]
    assert env.run([*base, str(src), f"openshell-{NAME}:/sandbox/scp.bin"]).returncode == 0
    back = tmp_path / "down.bin"
    p = env.run([*base, f"openshell-{NAME}:/sandbox/scp.bin", str(back)])
    assert p.returncode == 0, p.stderr
    assert back.read_bytes() == src.read_bytes()
    p = env.run([*base, str(src), f"openshell-{NAME}:/usr/scp-probe"])  # Landlock: /usr is read-only
    assert p.returncode != 0


def test_real_sftp_works_as_the_sandbox_user(env, tmp_path):
    (tmp_path / "f.txt").write_text("sftp-data\n")
    batch = "mkdir /sandbox/sftpdir\nput f.txt /sandbox/sftpdir/f.txt\nls -n /sandbox/sftpdir\nget /sandbox/sftpdir/f.txt g.txt\n"
    p = env.run(["sftp", "-F", str(env.ssh_config), "-b", "-", f"openshell-{NAME}"], input=batch.encode(), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "g.txt").read_text() == "sftp-data\n"
    owner = _sx(env, "stat", "-c", "%U", "/sandbox/sftpdir/f.txt").stdout.decode().strip()
    assert owner == "sandbox"  # written by the sandbox user, not by the root supervisor
    p = env.run(["sftp", "-F", str(env.ssh_config), "-b", "-", f"openshell-{NAME}"], input=b"put f.txt /etc/sftp-probe\n", cwd=tmp_path)
    assert p.returncode != 0 and "Permission denied" in p.stderr.decode()
    assert not Path("/etc/sftp-probe").exists()


def test_ssh_proxy_for_an_unknown_sandbox_fails_with_one_line(env):
    p = env.cli("ssh-proxy", "--name", "nope", input=b"")
    assert p.returncode == 1 and "not found" in p.stderr.decode()


# --------------------------------------------------------------------------- upload / download


@pytest.fixture
def tree(tmp_path):
    """A git work tree with an ignored file, an executable, a read-only file and an inside symlink."""
    root = tmp_path / "proj"
    (root / "sub").mkdir(parents=True)
    (root / ".gitignore").write_text("*.log\nbuild/\n")
    (root / "a.txt").write_text("A\n")
    (root / "debug.log").write_text("ignored\n")
    (root / "build").mkdir()
    (root / "build" / "out.o").write_text("ignored\n")
    (root / "sub" / "run.sh").write_text("#!/bin/sh\necho ran\n")
    os.chmod(root / "sub" / "run.sh", 0o750)
    (root / "ro.txt").write_text("ro\n")
    os.chmod(root / "ro.txt", 0o444)
    os.symlink("sub/run.sh", root / "run")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_upload_respects_gitignore_and_keeps_modes_and_symlinks(env, tree):
    env.ok("sandbox", "upload", NAME, str(tree), "/sandbox/up1")
    p = _sx(env, "sh", "-c", "cd /sandbox/up1 && find . | sort && stat -c '%n %a' sub/run.sh ro.txt && readlink run && ./run")
    lines = p.stdout.decode().splitlines()
    assert "./debug.log" not in lines and "./build" not in lines and "./.git" not in lines
    assert {"./a.txt", "./.gitignore", "./sub/run.sh", "./run", "./ro.txt"} <= set(lines)
    assert "sub/run.sh 750" in lines and "ro.txt 444" in lines
    assert lines[-2:] == ["sub/run.sh", "ran"]


def test_upload_with_no_git_ignore_sends_ignored_files(env, tree):
    env.ok("sandbox", "upload", NAME, str(tree), "/sandbox/up2", "--no-git-ignore")
    p = _sx(env, "cat", "/sandbox/up2/debug.log", "/sandbox/up2/build/out.o")
    assert p.stdout.decode() == "ignored\nignored\n"


def test_upload_of_a_single_file_lands_in_an_existing_dest_directory(env, tree):
    _sx(env, "mkdir", "-p", "/sandbox/one")
    env.ok("sandbox", "upload", NAME, str(tree / "a.txt"), "/sandbox/one")
    assert _sx(env, "cat", "/sandbox/one/a.txt").stdout == b"A\n"


def test_upload_refuses_a_symlink_pointing_out(env, tree):
    os.symlink("/etc/passwd", tree / "escape")
    p = env.cli("sandbox", "upload", NAME, str(tree), "/sandbox/up3")
    assert p.returncode == 1
    assert "escape" in p.stderr.decode() and "outside" in p.stderr.decode()


def _awkward_tree(root: Path) -> Path:
    """Names GNU tar could misread (a leading '-', spaces, a newline), a hard link, a deep path."""
    (root / "-C" / "dir with space").mkdir(parents=True)
    (root / "-C" / "dir with space" / "--files-from=x").write_text("dash\n")
    (root / "new\nline").write_text("nl\n")
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "deep").write_text("deep\n")
    os.link(root / "a" / "b" / "c" / "deep", root / "hard")
    os.mkfifo(root / "fifo")  # skipped: a FIFO is never sent
    return root


@pytest.mark.parametrize("packer", ["gnu tar", "tarfile"])
def test_upload_sends_awkward_names_and_hard_links_with_either_packer(env, tmp_path, packer):
    """GNU tar packs directory uploads when this machine has it; Python's tarfile otherwise. Both send the same tree."""
    tree = _awkward_tree(tmp_path / "awk")
    cli_env = dict(env.env)
    if packer == "tarfile":
        bindir = tmp_path / "bin"  # a PATH with git but no tar
        bindir.mkdir()
        os.symlink(shutil.which("git"), bindir / "git")
        cli_env["PATH"] = str(bindir)
    dest = f"/sandbox/awk-{packer.replace(' ', '')}"
    p = subprocess.run([OPENSHELL, "sandbox", "upload", NAME, str(tree), dest, "--no-git-ignore"], env=cli_env, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert "uploaded 4 files (13 B)" in p.stderr.decode()  # a hard link's bytes count once, with either packer
    p = _sx(env, "sh", "-c", f"cd {dest} && cat ./-C/'dir with space'/--files-from=x a/b/c/deep hard new?line && stat -c %h hard && ls")
    out = p.stdout.decode().splitlines()
    assert out[:4] == ["dash", "deep", "deep", "nl"]
    assert out[4] == "2"  # still one file under two names
    assert "fifo" not in out


def test_an_upload_of_a_file_that_changes_meanwhile_fails_and_says_so(env, tmp_path):
    """GNU tar pads a file that shrank while it read it and exits 1; the upload must not report success.

    The shrinking is played by a ``tar`` on PATH that runs the real one and then
    reports it, as GNU tar does (a real race would make the test flaky).
    """
    tree = tmp_path / "shrinks"
    tree.mkdir()
    (tree / "f").write_bytes(b"data")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "tar").write_text(f"#!/bin/sh\n{shutil.which('tar')} \"$@\"\necho 'tar: f: File shrank by 10 bytes; padding with zeroes' >&2\nexit 1\n")
    (bindir / "tar").chmod(0o755)
    cli_env = dict(env.env, PATH=f"{bindir}:{env.env['PATH']}")
    p = subprocess.run([OPENSHELL, "sandbox", "upload", NAME, str(tree), "/sandbox/shrinks"], env=cli_env, capture_output=True, timeout=120)
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert "a file changed while it was uploaded (tar: f: File shrank by 10 bytes; padding with zeroes)" in err and "upload again" in err


def test_download_of_a_file_named_like_an_option(env, tmp_path):
    _sx(env, "sh", "-c", "mkdir -p /sandbox/dash && echo dash > /sandbox/dash/-Tl")
    env.ok("sandbox", "download", NAME, "/sandbox/dash/-Tl", str(tmp_path / "got"))
    assert (tmp_path / "got").read_text() == "dash\n"


def test_transfers_negotiate_aes_gcm_and_large_packets(env):
    """The CLI asks for AES-GCM first and both ends allow 128 KiB packets (BENCHMARKS.md, "Transfers")."""
    code = (
        "from openshell_cli import session\n"
        "from openshell_cli.commands.ssh import ssh_transport\n"
        f"t = ssh_transport(session.client(None), {NAME!r})\n"
        "ch = t.open_session(); ch.exec_command('true'); ch.recv_exit_status()\n"
        "print(t.remote_cipher, t.local_cipher, ch.out_max_packet_size, ch.in_max_packet_size)\n"
    )
    p = env.run([str(Path(OPENSHELL).with_name("python")), "-c", code])
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().split() == ["aes128-gcm@openssh.com", "aes128-gcm@openssh.com", "131072", "131072"]


def test_upload_to_a_path_the_policy_forbids_fails_clearly(env, tree):
    p = env.cli("sandbox", "upload", NAME, str(tree / "a.txt"), "/usr/share/ia-probe")
    assert p.returncode == 1 and "tar in the sandbox failed" in p.stderr.decode()
    assert not Path("/usr/share/ia-probe").exists()
    p = env.cli("sandbox", "upload", NAME, str(tree), "/usr/share/ia-newdir/sub")  # mkdir fails, tar never runs
    err = p.stderr.decode()
    assert p.returncode == 1 and "cannot create /usr/share/ia-newdir/sub in the sandbox (" in err and "tar in the sandbox" not in err, err
    assert not Path("/usr/share/ia-newdir").exists()


def test_an_upload_that_fills_the_workdir_names_it_and_the_disk_limit(env, tmp_path):
    """A sandbox created with a small --disk: tar inside it hits ENOSPC; the CLI says the workdir is full, not "check the policy"."""
    name = "ia-cli-small"
    env.ok("sandbox", "create", "--name", name, "--disk", "16Mi", "--detach", timeout=300)
    try:
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(24 * 2**20))
        tree = tmp_path / "tree"
        tree.mkdir()
        (tree / "small").write_text("s\n")
        os.link(big, tree / "big.bin")
        for local, dest in ((big, "/sandbox/big.bin"), (tree, "/sandbox/tree")):
            p = env.cli("sandbox", "upload", name, str(local), dest, "--no-git-ignore", timeout=180)
            err = p.stderr.decode()
            assert p.returncode == 1, err
            assert err.startswith(f"error: upload to {dest} failed: the sandbox's workdir /sandbox ran out of space ("), err
            assert "create the sandbox with a larger --disk" in err and "policy" not in err and "uploaded" not in err, err
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        # Full to the last block: even the directory for the next upload cannot be made (tar never runs).
        fill = "f = open('/sandbox/fill', 'ab')\ntry:\n    while True:\n        f.write(bytes(4096)); f.flush()\nexcept OSError:\n    pass\n"
        env.cli("sandbox", "exec", name, "--", "python3", "-c", fill, timeout=120)
        p = env.cli("sandbox", "upload", name, str(tree / "small"), "/sandbox/newdir/", timeout=180)
        assert p.returncode == 1 and "the sandbox's workdir /sandbox ran out of space" in p.stderr.decode(), p.stderr.decode()
        # Room again: the same upload works.
        assert env.cli("sandbox", "exec", name, "--", "sh", "-c", "rm -rf /sandbox/big.bin /sandbox/tree /sandbox/fill").returncode == 0
        env.ok("sandbox", "upload", name, str(tree / "small"), "/sandbox/newdir/", timeout=180)
    finally:
        env.cli("sandbox", "delete", name, timeout=180)


def test_download_round_trips_modes_and_symlinks(env, tree, tmp_path):
    env.ok("sandbox", "upload", NAME, str(tree), "/sandbox/rt")
    out = tmp_path / "out"
    env.ok("sandbox", "download", NAME, "/sandbox/rt", str(out))
    assert (out / "a.txt").read_text() == "A\n"
    assert os.readlink(out / "run") == "sub/run.sh"
    assert (os.stat(out / "sub" / "run.sh").st_mode & 0o777) == 0o750
    assert not (out / "debug.log").exists()
    single = tmp_path / "single"
    env.ok("sandbox", "download", NAME, "/sandbox/rt/a.txt", str(single) + "/")
    assert (single / "a.txt").read_text() == "A\n"


def test_download_refuses_symlinks_the_sandbox_points_out(env, tmp_path):
    _sx(env, "sh", "-c", "mkdir -p /sandbox/evil && echo ok > /sandbox/evil/fine && ln -sf /etc /sandbox/evil/etc && ln -sf ../../.. /sandbox/evil/up")
    out = tmp_path / "evil"
    p = env.cli("sandbox", "download", NAME, "/sandbox/evil", str(out))
    assert p.returncode == 1
    assert "points outside the destination; refused" in p.stderr.decode()
    assert not (out / "etc").is_symlink() and not (out / "up").is_symlink()


def test_download_of_a_missing_path_is_a_one_line_error(env, tmp_path):
    p = env.cli("sandbox", "download", NAME, "/sandbox/does-not-exist", str(tmp_path / "x"))
    assert p.returncode == 1 and "does not exist" in p.stderr.decode()


def test_sandbox_side_extraction_refuses_escaping_members(env, tmp_path):
    """A hand-made hostile archive fed to the exact in-sandbox extract command."""
    from openshell.client.sdk import OpenShellClient
    from openshell.client.ssh_tunnel import open_ssh_transport
    from openshell_cli.transfer import remote_extract_command

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        for name, data in (("../escaped-dotdot", b"x"), ("/tmp/ia-escaped-abs", b"x"), ("ok.txt", b"ok")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, __import__("io").BytesIO(data))
        link = tarfile.TarInfo("lnk")
        link.type, link.linkname = tarfile.SYMTYPE, "/tmp"
        tar.addfile(link)
        through = tarfile.TarInfo("lnk/ia-through-link")
        through.size = 1
        tar.addfile(through, __import__("io").BytesIO(b"x"))
    old = dict(os.environ)
    os.environ.update(XDG_CONFIG_HOME=env.env["XDG_CONFIG_HOME"], OPENSHELL_GATEWAY="iacli")
    try:
        with OpenShellClient.from_config() as client:
            transport = open_ssh_transport(client, NAME)
            try:
                chan = transport.open_session()
                chan.exec_command(remote_extract_command("/sandbox/hostile/dest"))
                chan.sendall(evil.read_bytes())
                chan.shutdown_write()
                chan.recv_exit_status()
            finally:
                transport.close()
    finally:
        os.environ.clear()
        os.environ.update(old)
    p = _sx(env, "sh", "-c", "ls /sandbox/hostile/escaped-dotdot /tmp/ia-escaped-abs /tmp/ia-through-link 2>&1; cat /sandbox/hostile/dest/ok.txt")
    out = p.stdout.decode()
    assert out.count("No such file") == 3, out
    assert out.rstrip().endswith("ok")


def test_create_upload_happens_before_the_command_starts(env, tree):
    p = env.cli("sandbox", "create", "--name", "ia-cli-up", "--upload", f"{tree}:/sandbox/src", "--", "cat", "/sandbox/src/a.txt")
    try:
        assert p.returncode == 0, p.stderr
        assert p.stdout == b"A\n"
    finally:
        env.cli("sandbox", "delete", "ia-cli-up")


# --------------------------------------------------------------------------- forwards


def _serve_in_sandbox(env, port: int) -> subprocess.Popen:
    code = (
        "import http.server,socketserver\nclass H(http.server.BaseHTTPRequestHandler):\n def do_GET(self):\n"
        "  self.send_response(200); self.end_headers(); self.wfile.write(b'from-sandbox')\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()"
    )
    proc = subprocess.Popen(
        [OPENSHELL, "sandbox", "exec", NAME, "--", "python3", "-c", code],
        env=env.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _sx(env, "python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)").returncode == 0:
            return proc
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("server in the sandbox did not start")


def _get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data


def test_forward_start_list_stop_across_invocations(env, free_port):
    port = free_port()
    server = _serve_in_sandbox(env, port)
    try:
        p = env.ok("forward", "start", str(port), NAME)
        assert f"127.0.0.1:{port}" in p.stdout.decode()
        # start returned: the listener accepts right now, and reaches the sandbox's loopback
        assert _get(port).endswith(b"from-sandbox")
        assert _get(port).endswith(b"from-sandbox")
        rows = json.loads(env.ok("forward", "list", "-o", "json").stdout)
        assert [(r["sandbox"], r["port"], r["bind"]) for r in rows] == [(NAME, port, "127.0.0.1")]
        assert "PORT" in env.ok("forward", "list").stdout.decode()
        again = env.cli("forward", "start", str(port), NAME)
        assert again.returncode == 1 and "already forwarded" in again.stderr.decode()
        p = env.cli("forward", "stop", f"0.0.0.0:{port}", NAME)  # names another bind: refused, kept
        assert p.returncode == 1 and "forwarded on 127.0.0.1" in p.stderr.decode()
        assert _get(port).endswith(b"from-sandbox")
        env.ok("forward", "stop", f"127.0.0.1:{port}", NAME)  # the [BIND:]PORT given to start
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert json.loads(env.ok("forward", "list", "-o", "json").stdout) == []
        p = env.cli("forward", "stop", str(port), NAME)
        assert p.returncode == 1 and "no forward" in p.stderr.decode()
    finally:
        env.cli("forward", "stop", str(port), NAME)
        server.kill()
        server.wait()


def test_forward_on_all_interfaces_warns_and_loopback_does_not(env, free_port):
    port = free_port()
    server = _serve_in_sandbox(env, port)
    try:
        p = env.ok("forward", "start", f"0.0.0.0:{port}", NAME)
        assert "warning: 0.0.0.0:" in p.stderr.decode() and "not a loopback address" in p.stderr.decode()
        assert _get(port).endswith(b"from-sandbox")
        env.ok("forward", "stop", f"0.0.0.0:{port}", NAME)
        p = env.ok("forward", "start", f"localhost:{port}", NAME)
        assert "warning" not in p.stderr.decode()
    finally:
        env.cli("forward", "stop", str(port), NAME)
        server.kill()
        server.wait()


def test_forward_to_an_unknown_sandbox_fails_and_leaves_nothing(env, free_port):
    port = free_port()
    p = env.cli("forward", "start", f"127.0.0.1:{port}", "no-such-sandbox")
    assert p.returncode == 1 and "not found" in p.stderr.decode()
    assert json.loads(env.ok("forward", "list", "-o", "json").stdout) == []


def test_forward_bad_port_is_a_usage_error(env):
    p = env.cli("forward", "start", "70000", NAME)
    assert p.returncode == 2
    # ssh -L habit: LOCAL:REMOTE is refused with the form that works, not read as a bind address
    for bare in ("::1", "::1:8000"):  # not read as bind ":" / "::1:" with a port
        p = env.cli("forward", "start", bare, NAME)
        assert p.returncode == 2 and "[::1]:PORT" in p.stderr.decode(), p.stderr
    p = env.cli("forward", "start", "8080:80", NAME)
    assert p.returncode == 2 and "LOCAL:REMOTE is not supported" in p.stderr.decode() and "127.0.0.1:80" in p.stderr.decode()


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs Debian's openssh-client")
def test_real_ssh_local_forward_goes_to_sandbox_loopback(env, free_port):
    port, local = free_port(), free_port()
    server = _serve_in_sandbox(env, port)
    ssh = subprocess.Popen(
        ["ssh", "-F", str(env.ssh_config), "-N", "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{local}:127.0.0.1:{port}", f"openshell-{NAME}"],
        env=env.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert _get(local).endswith(b"from-sandbox")
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        ssh.terminate()
        ssh.wait(10)
        server.kill()
        server.wait()


# --------------------------------------------------------------------------- exec stdin streaming


def test_exec_streams_stdin_and_ends_when_the_command_ends_even_if_stdin_never_closes(env):
    proc = subprocess.Popen(
        [OPENSHELL, "sandbox", "exec", NAME, "--", "sh", "-c", "read line; echo got-$line; exit 5"],
        env=env.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        proc.stdin.write(b"first\n")
        proc.stdin.flush()  # and never closed
        out = proc.stdout.read()
        assert proc.wait(timeout=30) == 5
        assert out == b"got-first\n"
    finally:
        proc.kill()
        proc.stdin.close()
