"""The download extractor against hostile archives (no sandbox needed: these are the bytes a sandbox could send),
and the parsing of tar's messages about paths it skipped."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from openshell_cli.transfer import MAX_REASON, Skipped, Stats, TransferError, UnsafeMember, extract_stream, parse_tar_stderr, regular_mode, upload_members


def _tar(*members: tuple[str, str, bytes | str]) -> io.BytesIO:
    """Members as (kind, name, data-or-linkname); kind is file, dir, sym or link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                info.mode = 0o640
                tar.addfile(info, io.BytesIO(payload))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            elif kind == "dev":
                info.type = tarfile.CHRTYPE
            tar.addfile(info)
    buf.seek(0)
    return buf


def _extract(buf: io.BytesIO, dest: Path) -> Stats:
    stats = Stats()
    with tarfile.open(fileobj=buf, mode="r|") as tar:
        extract_stream(tar, dest, stats)
    return stats


@pytest.fixture
def dest(tmp_path):
    d = tmp_path / "dest"
    d.mkdir()
    return d


def test_normal_archive_keeps_modes_and_inside_links(dest):
    stats = _extract(_tar(("dir", "d", b""), ("file", "d/f", b"data"), ("sym", "l", "d/f"), ("link", "h", "d/f")), dest)
    assert (dest / "d" / "f").read_bytes() == b"data"
    assert (os.stat(dest / "d" / "f").st_mode & 0o777) == 0o640
    assert os.readlink(dest / "l") == "d/f"
    assert os.stat(dest / "h").st_ino == os.stat(dest / "d" / "f").st_ino
    assert (stats.files, stats.links, stats.bytes) == (2, 1, 4)


@pytest.mark.parametrize(
    "members, what",
    [
        ((("file", "../escape", b"x"),), "'..'"),
        ((("file", "a/../../escape", b"x"),), "'..'"),
        ((("file", "/tmp/ia-abs-escape", b"x"),), "absolute"),
        ((("sym", "out", "/etc"),), "points outside"),
        ((("sym", "out", "../.."),), "points outside"),
        ((("dir", "d", b""), ("sym", "d/up", "../../x")), "points outside"),
        ((("link", "h", "/etc/passwd"),), "hard link"),
        ((("link", "h", "../x"),), "hard link"),
    ],
)
def test_escaping_members_are_refused(dest, members, what):
    with pytest.raises(UnsafeMember, match=what):
        _extract(_tar(*members), dest)
    assert not (dest.parent / "escape").exists()
    assert not Path("/tmp/ia-abs-escape").exists()


def test_writing_through_a_planted_link_is_refused(dest, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, dest / "planted")  # e.g. left by an earlier download
    with pytest.raises(UnsafeMember, match="through a link"):
        _extract(_tar(("file", "planted/pwned", b"x")), dest)
    assert not (outside / "pwned").exists()


@pytest.mark.parametrize("kind", ["sym", "link"])
def test_a_directory_already_written_cannot_become_a_link_to_write_through(dest, tmp_path, kind):
    """The extractor remembers directories it resolved (to skip walking them again); one must never turn into a link."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / "f").write_bytes(b"")
    payload = str(outside) if kind == "sym" else "f"
    buf = _tar(("dir", "d", b""), ("file", "d/one", b"1"), (kind, "d", payload), ("file", "d/two", b"2"))
    with pytest.raises((UnsafeMember, OSError)):
        _extract(buf, dest)
    assert list(outside.iterdir()) == []
    assert (dest / "d").is_dir() and not (dest / "d").is_symlink()
    assert not (dest / "d" / "two").exists()


def test_a_symlink_whose_target_leaves_through_another_link_is_refused(dest, tmp_path):
    """``e -> a/b/c/../../..`` with ``c -> ../..``: lexically inside, really two levels above DEST."""
    buf = _tar(("dir", "a", b""), ("dir", "a/b", b""), ("sym", "a/b/c", "../.."), ("sym", "e", "a/b/c/../../.."))
    with pytest.raises(UnsafeMember, match="points outside"):
        _extract(buf, dest)
    assert not (dest / "e").is_symlink()


@pytest.mark.parametrize("kind, payload", [("sym", "x"), ("link", "f"), ("file", b"data")])
def test_a_member_over_an_existing_directory_is_refused_by_name(dest, kind, payload):
    (dest / "f").write_bytes(b"")
    with pytest.raises(UnsafeMember, match="would replace a directory"):
        _extract(_tar(("dir", "d", b""), ("file", "d/keep", b"k"), (kind, "d", payload)), dest)
    assert (dest / "d" / "keep").read_bytes() == b"k"


def test_a_hard_link_to_itself_is_refused_and_the_file_kept(dest):
    with pytest.raises(UnsafeMember, match="itself"):
        _extract(_tar(("file", "f", b"data"), ("link", "f", "f")), dest)
    assert (dest / "f").read_bytes() == b"data"


def test_a_file_member_does_not_replace_an_existing_symlink(dest, tmp_path):
    target = tmp_path / "victim"
    target.write_text("keep")
    os.symlink(target, dest / "f")
    with pytest.raises(UnsafeMember, match="symlink"):
        _extract(_tar(("file", "f", b"overwrite")), dest)
    assert target.read_text() == "keep"


def test_devices_are_skipped(dest):
    _extract(_tar(("dev", "tty0", b""), ("file", "ok", b"1")), dest)
    assert sorted(os.listdir(dest)) == ["ok"]


def _git(*args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.test", "-c", "protocol.file.allow=always", *args], check=True, capture_output=True)


def test_a_git_upload_takes_nested_repositories_files_by_their_own_ignore_rules(tmp_path):
    root = tmp_path / "proj"
    (root / "nested" / "src").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    _git("init", "-q", str(root))
    # an untracked repository inside: git lists only "nested/"
    (root / "nested" / ".gitignore").write_text("*.tmp\n")
    (root / "nested" / "src" / "m.py").write_text("m")
    (root / "nested" / "junk.tmp").write_text("ignored by nested's own rules")
    _git("init", "-q", str(root / "nested"))
    (root / "empty-repo").mkdir()
    _git("init", "-q", str(root / "empty-repo"))
    # a submodule (a tracked gitlink): git lists only "lib"
    lib_src = tmp_path / "libsrc"
    lib_src.mkdir()
    (lib_src / "l.c").write_text("l")
    _git("init", "-q", str(lib_src))
    _git("-C", str(lib_src), "add", ".")
    _git("-C", str(lib_src), "commit", "-qm", "l")
    _git("-C", str(root), "submodule", "add", "-q", str(lib_src), "lib")
    # the enclosing repository's rules apply inside too
    (root / ".gitignore").write_text("*.pem\nnode_modules/\n")
    (root / "nested" / "key.pem").write_text("secret")
    (root / "nested" / "node_modules").mkdir()
    (root / "nested" / "node_modules" / "dep.js").write_text("d")
    names = upload_members(root)[1]
    assert sorted(names) == sorted(set(names)), "a member twice"
    assert {"a.txt", "nested", "nested/.gitignore", "nested/src", "nested/src/m.py", "empty-repo", "lib", "lib/l.c", ".gitmodules"} <= set(names), names
    assert not [n for n in names if n.endswith((".tmp", ".pem")) or "node_modules" in n or "/.git/" in f"/{n}/"], names  # no .git sent
    # a submodule not checked out is its (empty) directory: git would answer for the enclosing repository inside it
    _git("-C", str(root), "commit", "-qm", "with lib")
    _git("-C", str(root), "submodule", "deinit", "--force", "--quiet", "lib")
    names = upload_members(root)[1]
    assert "lib" in names and not [n for n in names if n.startswith("lib/")], names


def test_a_nested_repository_git_refuses_fails_the_upload_instead_of_sending_its_git(tmp_path):
    root = tmp_path / "proj"
    (root / "other").mkdir(parents=True)
    _git("init", "-q", str(root))
    _git("init", "-q", str(root / "other"))
    (root / "other" / ".gitignore").write_text("x.env\n")
    (root / "other" / "x.env").write_text("secret")
    for dirpath, dirnames, filenames in os.walk(root / "other"):
        for n in [dirpath, *[os.path.join(dirpath, f) for f in dirnames + filenames]]:
            os.lchown(n, 1234, 1234)  # another user's: git refuses it ("dubious ownership")
    with pytest.raises(TransferError, match=r"git cannot read the repository at .*other \(fatal: detected dubious ownership.*--no-git-ignore"):
        upload_members(root)
    assert "other/x.env" in upload_members(root, git_ignore=False)[1]  # what the message offers


def test_a_broken_git_pointer_fails_the_upload_instead_of_sending_what_it_ignores(tmp_path):
    root = tmp_path / "copied-submodule"
    root.mkdir()
    (root / ".git").write_text("gitdir: ../.git/modules/sub\n")  # a submodule copied out of its repository
    (root / ".gitignore").write_text("*.pem\n")
    (root / "k.pem").write_text("secret")
    with pytest.raises(TransferError, match=r"git cannot read the repository at .*copied-submodule \(fatal: not a git repository: .*broken \.git pointer"):
        upload_members(root)
    (root / ".git").unlink()  # no repository at all: every file goes, as before
    assert "k.pem" in upload_members(root)[1]


def test_a_plain_directory_uploads_whatever_language_git_speaks(tmp_path, monkeypatch):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "f").write_text("f")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("LANGUAGE", "de")  # git then says "Kein Git-Repository" (Debian ships its German messages)
    assert upload_members(tmp_path / "plain")[1] == ["f"]


def test_nested_repository_names_are_not_pathspec_magic(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    _git("init", "-q", str(root))
    (root / ".gitignore").write_text("/:cfg/token\n/secret/\n")
    for sub in (":cfg", ":secret", ":!neg"):
        (root / sub).mkdir()
        _git("init", "-q", str(root / sub))
        (root / sub / "token").write_text("t")
        (root / sub / "a.txt").write_text("a")
    names = upload_members(root)[1]
    assert ":cfg/token" not in names and ":cfg/a.txt" in names  # ignored by the parent, by its literal name
    assert {":secret/token", ":secret/a.txt", ":!neg/token", ":!neg/a.txt"} <= set(names), names


def test_upload_refuses_links_pointing_out_of_the_tree(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    (root / "f").write_text("x")
    os.symlink("f", root / "fine")
    assert upload_members(root, git_ignore=False)[1] == ["f", "fine"]
    os.symlink("../outside", root / "bad")
    with pytest.raises(UnsafeMember, match="bad"):
        upload_members(root, git_ignore=False)


# --------------------------------------------------------------------------- tar's messages about skipped paths


def test_tar_messages_become_sandbox_paths_for_a_directory_download():
    err = (
        "tar: ./locked: Cannot open: Permission denied\n"
        "tar: ./a: b.txt: Cannot open: Permission denied\n"
        "tar: ./grow.log: file changed as we read it\n"
        "tar: .: Cannot open: Permission denied\n"
        "tar: Exiting with failure status due to previous errors\n"
    )
    assert parse_tar_stderr(err, "/sandbox/d") == [
        Skipped("/sandbox/d/locked", "Cannot open: Permission denied"),
        Skipped("/sandbox/d/a: b.txt", "Cannot open: Permission denied"),
        Skipped("/sandbox/d/grow.log", "file changed as we read it"),
        Skipped("/sandbox/d", "Cannot open: Permission denied"),
    ]


def test_tar_messages_for_a_single_file_name_it_beside_its_parent():
    assert parse_tar_stderr("tar: f.txt: Cannot open: Permission denied\n", "/var/tmp/x/f.txt") == [
        Skipped("/var/tmp/x/f.txt", "Cannot open: Permission denied")
    ]


def test_an_unrecognised_message_is_kept_against_the_downloaded_path_and_trimmed():
    [s] = parse_tar_stderr("tar: something odd " + "x" * 1000 + "\n", "/sandbox/d")
    assert s.path == "/sandbox/d" and s.reason.startswith("something odd")
    assert len(s.reason) == MAX_REASON
    assert Stats(skipped=[s]).complete is False and Stats().complete is True


def test_modes_a_sandbox_asks_for_are_masked_by_the_local_umask(dest):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("open")
        info.type, info.mode = tarfile.DIRTYPE, 0o7777
        tar.addfile(info)
        info = tarfile.TarInfo("open/f")
        info.size, info.mode = 1, 0o6777
        tar.addfile(info, io.BytesIO(b"x"))
    buf.seek(0)
    old = os.umask(0o022)
    try:
        _extract(buf, dest)
    finally:
        os.umask(old)
    assert os.stat(dest / "open").st_mode & 0o7777 == 0o755
    assert os.stat(dest / "open" / "f").st_mode & 0o7777 == 0o755


def test_commands_run_in_the_sandbox_do_not_take_tar_from_the_sandbox_path():
    from openshell_cli.transfer import download_command, remote_extract_command

    for cmd in (download_command("/sandbox/x"), remote_extract_command("/sandbox/x")):
        assert cmd.startswith("PATH=/usr/bin:/bin; export PATH; "), cmd


def test_a_refused_member_leaves_what_was_written_with_the_archives_directory_modes(dest):
    # the directories are 0700 while the download writes into them; a refusal
    # half-way used to leave them so
    with pytest.raises(UnsafeMember, match="points outside"):
        _extract(_tar(("dir", "d", b""), ("dir", "d/e", b""), ("file", "d/e/f", b"x"), ("sym", "out", "/etc")), dest)
    assert (dest / "d" / "e" / "f").read_bytes() == b"x"
    umask = os.umask(0o022)
    os.umask(umask)
    assert regular_mode(dest / "d") == regular_mode(dest / "d" / "e") == 0o755 & ~umask


# --------------------------------------------------------------------------- upload failures, with a scripted SSH channel


class _Chan:
    """A paramiko ``Channel`` as ``upload``/``download`` use it, scripted: what the command prints and how it exits.

    ``accept``: bytes taken before ``sendall`` fails as a closed channel does (the
    command exited without reading everything); None: all of it.
    """

    def __init__(self, stdout: bytes = b"", stderr: bytes = b"", code: int = 0, accept: int | None = None) -> None:
        import threading

        self.stdout, self.stderr, self.exit_status, self.accept = stdout, stderr, code, accept
        self.sent = bytearray()
        self.command = ""
        self.closed = False
        self.status_event = threading.Event()
        self.status_event.set()  # the command has exited (its output is all buffered)
        self.stderr_reads = 0

    def exec_command(self, command: str) -> None:
        self.command = command

    def settimeout(self, _t) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        if self.accept is not None and len(self.sent) + len(data) > self.accept:
            raise OSError("Socket is closed")
        self.sent += data

    def shutdown_write(self) -> None:
        pass

    def exit_status_ready(self) -> bool:
        return True

    def recv_exit_status(self) -> int:
        return self.exit_status

    def recv_ready(self) -> bool:
        return bool(self.stdout)

    def recv(self, n: int) -> bytes:
        data, self.stdout = self.stdout[:n], self.stdout[n:]
        return data

    def recv_stderr_ready(self) -> bool:
        return bool(self.stderr)

    def recv_stderr(self, n: int) -> bytes:
        self.stderr_reads += 1
        data, self.stderr = self.stderr[:n], self.stderr[n:]
        return data

    def close(self) -> None:
        self.closed = True


class _Transport:
    """Hands out :class:`_Chan` objects: ``script(command) -> _Chan`` decides what each command does."""

    def __init__(self, script) -> None:
        self.script = script
        self.commands: list[str] = []

    def open_session(self):
        transport = self

        class Session(_Chan):
            def exec_command(self, command: str) -> None:
                transport.commands.append(command)
                script = transport.script(command)
                self.__dict__.update({k: v for k, v in script.__dict__.items() if k not in ("sent", "command")})
                self.command = command

        return Session()


DF_WORKDIR = (
    b"Filesystem     1024-blocks  Used Available Capacity Mounted on\n/dev/loop5         14327 14327         0     100% /sandbox\n"
    b"Filesystem     Inodes IUsed IFree IUse% Mounted on\n/dev/loop5       4096    40  4056    1% /sandbox\n"
)
NOSPACE = b"tar: big: Cannot write: No space left on device\ntar: Exiting with failure status due to previous errors\n"


def _sandbox(extract: _Chan, df: bytes = DF_WORKDIR, is_dir: bool = False) -> _Transport:
    def script(command: str) -> _Chan:
        if command.startswith("test -d"):
            return _Chan(code=0 if is_dir else 1)
        if "df -P" in command:
            return _Chan(stdout=df.splitlines(keepends=True)[1] + df.splitlines(keepends=True)[3])
        assert "tar -x" in command or "tar -c" in command, command
        return extract

    return _Transport(script)


@pytest.fixture
def big(tmp_path):
    f = tmp_path / "big"
    f.write_bytes(b"x" * 100_000)
    return f


@pytest.mark.parametrize(
    "stderr",
    [
        NOSPACE,
        b"tar: big: Wrote only 7680 of 10240 bytes\ntar: Exiting with failure status due to previous errors\n",  # a short write(2)
        b"tar: big: Cannot write: Disk quota exceeded\ntar: Exiting with failure status due to previous errors\n",
    ],
)
def test_an_upload_the_workdir_has_no_room_for_names_it_and_the_fix(big, stderr):
    from openshell_cli.transfer import TransferError, upload

    with pytest.raises(TransferError) as err:
        upload(_sandbox(_Chan(stderr=stderr, code=2)), big, "/sandbox/big")
    msg = str(err.value)
    assert type(err.value).__name__ == "OutOfSpace"
    assert msg.startswith("upload to /sandbox/big failed: the sandbox's workdir /sandbox ran out of space (14.0 MiB file system, 0 KiB free; tar: big: ")
    assert "create the sandbox with a larger --disk (the default is 10Gi)" in msg
    assert "policy" not in msg and "Exiting with failure status" not in msg
    assert "\n" not in msg


def test_a_workdir_out_of_inodes_says_so(big):
    from openshell_cli.transfer import TransferError, upload

    df = DF_WORKDIR.replace(b"4096    40  4056", b"4096  4096     0")
    with pytest.raises(TransferError) as err:
        upload(_sandbox(_Chan(stderr=b"tar: 4676: Cannot open: No space left on device\n", code=2), df=df), big, "/sandbox/many/")
    msg = str(err.value)
    assert "the sandbox's workdir /sandbox ran out of inodes (all 4096 in use" in msg and "larger --disk" in msg


def test_a_full_tmp_points_at_its_own_limit_not_at_disk(big):
    from openshell_cli.transfer import TransferError, upload

    df = DF_WORKDIR.replace(b"/sandbox", b"/tmp")
    with pytest.raises(TransferError, match=r"the sandbox's /tmp ran out of space .*limits\.tmp") as err:
        upload(_sandbox(_Chan(stderr=NOSPACE, code=2), df=df), big, "/tmp/x/big")
    assert "--disk" not in str(err.value)


def test_without_df_the_destination_still_names_the_workdir(big):
    from openshell_cli.transfer import TransferError, upload

    with pytest.raises(TransferError, match=r"workdir /sandbox ran out of space \(tar: big: Cannot write: No space left on device\)"):
        upload(_sandbox(_Chan(stderr=NOSPACE, code=2), df=b"\n\n\n\n"), big, "/sandbox/sub/big")


def test_an_upload_whose_directory_cannot_be_created_for_lack_of_space_says_so_not_broke_off(big):
    """mkdir -p fails, so tar never runs: the channel closes while we still send."""
    from openshell_cli.transfer import TransferError, upload

    mkdir = _Chan(stderr="mkdir: cannot create directory ‘/sandbox/new’: No space left on device\n".encode(), code=1, accept=0)
    with pytest.raises(TransferError) as err:
        upload(_sandbox(mkdir), big, "/sandbox/new/")
    msg = str(err.value)
    assert "workdir /sandbox ran out of space" in msg and "mkdir: cannot create directory" in msg and "broke off" not in msg
    assert "What fit was written" not in msg  # nothing was


def test_another_failure_shows_tars_own_reason_not_its_closing_line(big):
    from openshell_cli.transfer import TransferError, upload

    err = b"tar: big: Cannot open: Permission denied\ntar: Exiting with failure status due to previous errors\n"
    with pytest.raises(TransferError) as exc:
        upload(_sandbox(_Chan(stderr=err, code=2)), big, "/usr/share/big")
    assert type(exc.value) is TransferError
    assert str(exc.value) == "tar in the sandbox failed (2): tar: big: Cannot open: Permission denied; check that /usr/share/big is writable by the policy"


def test_a_directory_that_cannot_be_created_is_named_not_blamed_on_tar(big):
    from openshell_cli.transfer import TransferError, upload

    mkdir = _Chan(stderr="mkdir: cannot create directory ‘/usr/share/new’: Permission denied\n".encode(), code=1, accept=0)
    with pytest.raises(TransferError) as exc:
        upload(_sandbox(mkdir), big, "/usr/share/new/")
    assert str(exc.value) == (
        "cannot create /usr/share/new/ in the sandbox (cannot create directory ‘/usr/share/new’: Permission denied);"
        " name a DEST the policy lets the sandbox write (such as /sandbox or /tmp)"
    )


def test_the_remote_tars_stderr_is_read_while_sending():
    """Unread stderr fills the SSH window stdout and stderr share, and tar would stall on it (a full workdir: one line per file)."""
    from openshell_cli.transfer import CHUNK, _ChannelWriter

    chan = _Chan(stderr=b"tar: f: Cannot write: No space left on device\n" * 1000)
    writer = _ChannelWriter(chan)
    writer.write(b"\0" * CHUNK)
    assert chan.stderr == b"" and writer.stderr.startswith(b"tar: f: Cannot write")


# --------------------------------------------------------------------------- LOCAL itself a symlink


@pytest.mark.parametrize("target", ["/etc/passwd", "real", "missing"])
def test_a_local_that_is_itself_a_symlink_is_refused_naming_it_and_its_target(tmp_path, target):
    (tmp_path / "real").mkdir()
    link = tmp_path / "link"
    os.symlink(target, link)
    with pytest.raises(UnsafeMember, match=f"^{link} is a symlink"):
        upload_members(link, git_ignore=False)
    from openshell_cli.transfer import check_upload_source, upload

    for local in (str(link), str(link) + "/"):  # "link/": the link still, not a way around the check
        with pytest.raises(UnsafeMember) as err:
            check_upload_source(local)
        msg = str(err.value)
        assert msg.startswith(f"{local} is a symlink (-> {target}); uploads send symlinks as links"), msg
        assert ("it points to nothing that exists" if target == "missing" else f"name what it points to instead ({os.path.realpath(link)})") in msg
    sandbox = _Transport(lambda command: pytest.fail(f"nothing may run in the sandbox: {command}"))
    with pytest.raises(UnsafeMember):
        upload(sandbox, link, "/sandbox/")
    assert sandbox.commands == []


def test_a_local_below_a_symlinked_directory_is_fine(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("x")
    os.symlink("real", tmp_path / "link")
    assert upload_members(tmp_path / "link" / "f", git_ignore=False) == (tmp_path / "link", ["f"])


def _cli(*args: str):
    from click.testing import CliRunner
    from openshell_cli.main import cli

    return CliRunner().invoke(cli, list(args))


def test_the_cli_refuses_a_symlink_local_before_connecting(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nocfg"))  # no gateway: the check comes first
    os.symlink("/etc/passwd", tmp_path / "pw")
    r = _cli("sandbox", "upload", "demo", str(tmp_path / "pw"), "/sandbox/")
    assert r.exit_code == 2 and f"{tmp_path}/pw is a symlink (-> /etc/passwd)" in r.output and "name what it points to instead (/etc/passwd)" in r.output
    r = _cli("sandbox", "create", "--upload", f"{tmp_path}/pw:/sandbox", "--", "true")
    assert r.exit_code == 2 and f"{tmp_path}/pw is a symlink (-> /etc/passwd)" in r.output


# --------------------------------------------------------------------------- local paths too long


LONG_NAME = "n" * 300


def test_a_local_name_or_path_too_long_is_named_with_the_limit(tmp_path):
    from openshell_cli.transfer import local_path_problem

    name = tmp_path / LONG_NAME
    problem = local_path_problem(name)
    assert problem is not None and problem.endswith("is too long: a name in it is 300 bytes long, and a file name may have at most 255")
    assert problem.startswith(str(tmp_path)[:20]) and "…" in problem and "\n" not in problem
    assert local_path_problem(name, must_exist=False) == problem
    deep = "/".join(["d" * 200] * 25)
    assert local_path_problem(deep).endswith(f"is too long: it is {len(deep)} bytes long, and a path may have at most 4095")
    assert local_path_problem(tmp_path / "missing") == f"{tmp_path}/missing does not exist"
    assert local_path_problem(tmp_path / "missing", must_exist=False) is None


def test_the_cli_names_an_upload_source_too_long(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nocfg"))
    long = str(tmp_path / LONG_NAME)
    for args in (("sandbox", "upload", "demo", long), ("sandbox", "create", "--upload", f"{long}:/sandbox", "--", "true")):
        r = _cli(*args)
        assert r.exit_code == 2, r.output
        assert "is too long: a name in it is 300 bytes long, and a file name may have at most 255" in r.output
        assert "Errno" not in r.output and "does not exist" not in r.output


def _deep_tree(root: Path) -> Path:
    """``root/d…/d…/…/leaf`` whose path is longer than PATH_MAX (made with relative steps, as any program can)."""
    here = os.getcwd()
    (root / "deep").mkdir(parents=True)
    os.chdir(root / "deep")
    try:
        for _ in range(20):
            os.mkdir("d" * 250)
            os.chdir("d" * 250)
        Path("leaf").write_text("x")
    finally:
        os.chdir(here)
    return root / "deep"


def test_an_upload_with_a_path_too_long_inside_names_it(tmp_path):
    from openshell_cli.transfer import TransferError, upload

    deep = _deep_tree(tmp_path)
    sandbox = _Transport(lambda command: pytest.fail(f"nothing may run in the sandbox: {command}"))
    with pytest.raises(TransferError) as err:
        upload(sandbox, deep, "/sandbox/deep", git_ignore=False)
    msg = str(err.value)
    assert msg.startswith(f"reading {str(deep)[:20]}") and "failed: the path is too long (it is " in msg and "a path may have at most 4095" in msg
    assert "Errno" not in msg and sandbox.commands == []


def test_a_download_into_a_dest_too_long_is_refused_before_anything_runs(tmp_path):
    from openshell_cli.transfer import TransferError, download

    sandbox = _Transport(lambda command: pytest.fail(f"nothing may run in the sandbox: {command}"))
    for dest in (tmp_path / LONG_NAME, str(tmp_path / LONG_NAME) + "/", tmp_path / LONG_NAME / "sub"):
        with pytest.raises(TransferError, match=r"^cannot download: DEST .*… ?.* is too long: a name in it is 300 bytes long.*; name a shorter DEST$"):
            download(sandbox, "/sandbox/f", dest)
    assert sandbox.commands == [] and list(tmp_path.iterdir()) == []


def test_a_relative_dest_too_long_once_made_absolute_is_named(tmp_path, monkeypatch):
    """Each name is fine and the relative DEST is short, but the directory it is in is past PATH_MAX."""
    from openshell_cli.transfer import TransferError, download

    monkeypatch.chdir(tmp_path)
    for _ in range(22):  # 22 x 201 bytes: past 4095 from /
        os.mkdir("d" * 200)
        os.chdir("d" * 200)
    sandbox = _Transport(lambda command: pytest.fail(f"nothing may run in the sandbox: {command}"))
    with pytest.raises(
        TransferError, match=r"^cannot download: DEST .*… ?.* is too long: it is \d+ bytes long, and a path may have at most 4095; name a shorter DEST$"
    ):
        download(sandbox, "/sandbox/f", "hi.txt")
    assert sandbox.commands == [] and os.listdir(".") == []


def test_a_download_member_whose_local_path_is_too_long_is_named(tmp_path):
    """DEST is fine, but DEST plus a member's name is past PATH_MAX."""
    from openshell_cli.transfer import TransferError, download

    dest = tmp_path / ("x" * 200)
    name = "/".join(["m" * 250] * 16) + "/leaf"  # within what the extractor takes (4096)
    members = [("dir", "/".join(["m" * 250] * (i + 1)), b"") for i in range(16)] + [("file", name, b"data")]
    archive = _tar(*members).getvalue()
    sandbox = _sandbox(_Chan(stdout=archive), is_dir=True)
    with pytest.raises(TransferError) as err:
        download(sandbox, "/sandbox/deep", dest)
    msg = str(err.value)
    assert msg.startswith("writing the download of /sandbox/deep as ") and "failed: the path is too long (it is " in msg
    assert msg.endswith("download into a shorter DEST, or a directory further down") and "Errno" not in msg
