"""The download extractor against hostile archives (no sandbox needed: these are the bytes a sandbox could send),
and the parsing of tar's messages about paths it skipped."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from openshell_cli.transfer import MAX_REASON, Skipped, Stats, UnsafeMember, extract_stream, parse_tar_stderr, regular_mode, upload_members


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
