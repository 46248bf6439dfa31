"""Building and trusting the compiled init (``openshell.supervisor.native_init``)."""

from __future__ import annotations

import os
import shutil

import pytest
from openshell.supervisor import native_init
from openshell.supervisor.sandbox_ns import SandboxNamespaces, SandboxNamespacesError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the cache is root's)")

needs_cc = pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler")


@pytest.fixture
def cache(tmp_path):
    # tmp_path's parents are root's and not writable by others on this machine; the
    # cache itself is made by build()
    os.chmod(tmp_path, 0o755)
    return tmp_path / "cache"


@needs_cc
def test_build_makes_a_root_only_executable_named_by_the_source(cache):
    path = native_init.build(cache)
    assert path is not None and os.path.basename(path) == native_init._name()
    st = os.stat(path)
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o755
    assert native_init.build(cache) == path == native_init.binary(cache)  # built once
    assert [p.name for p in cache.iterdir()] == [os.path.basename(path)]  # no temporary left


@needs_cc
def test_a_file_or_directory_others_may_write_is_not_executed(cache):
    path = native_init.build(cache)
    assert path is not None
    os.chmod(path, 0o775)
    assert native_init.binary(cache) is None
    os.chmod(path, 0o755)
    os.chmod(cache, 0o777)
    assert native_init.binary(cache) is None
    assert native_init.build(cache) is None  # and nothing is built into it


@needs_cc
def test_a_symlink_in_place_of_the_binary_is_not_followed(cache, tmp_path):
    path = native_init.build(cache)
    assert path is not None
    os.replace(path, tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", path)
    assert native_init.binary(cache) is None


def test_without_a_compiler_nothing_is_built_and_the_python_init_is_used(cache, monkeypatch):
    monkeypatch.setattr(native_init.shutil, "which", lambda _name: None)
    monkeypatch.setattr(native_init, "CACHE_DIR", cache)
    assert native_init.build() is None and native_init.binary() is None
    with pytest.raises(SandboxNamespacesError, match="native init is not built"):
        SandboxNamespaces.start("ns-test", init="native")
    made = SandboxNamespaces.create("ns-test")  # the default falls back
    try:
        assert "python" in os.readlink(f"/proc/{made.pid}/exe")
        with open(f"/proc/{made.pid}/comm") as f:
            assert f.read() == "openshell-init\n"
    finally:
        made.close()


@needs_cc
def test_a_compiler_error_is_reported_not_raised(cache, monkeypatch, tmp_path, caplog):
    bad = tmp_path / "bad.c"
    bad.write_text("this is not C\n")
    monkeypatch.setattr(native_init, "SOURCE", bad)
    native_init._source.cache_clear()
    try:
        assert native_init.build(cache) is None
        assert "event=native_init_unavailable" in caplog.text
    finally:
        native_init._source.cache_clear()


@needs_cc
def test_the_compiler_gets_the_hashed_source_and_a_clean_environment(cache, monkeypatch):
    # a source edited after the hash was taken must not be built under the old name,
    # and CPATH and the like must not reach the compiler
    monkeypatch.setenv("CPATH", "/nonexistent-include")
    monkeypatch.setenv("GCC_EXEC_PREFIX", "/nonexistent-prefix/")
    seen = {}
    real_run = native_init.subprocess.run

    def run(argv, **kw):
        seen.update(argv=argv, input=kw.get("input"), env=kw.get("env"))
        return real_run(argv, **kw)

    monkeypatch.setattr(native_init.subprocess, "run", run)
    assert native_init.build(cache) is not None
    assert seen["input"] == native_init.SOURCE.read_bytes() and seen["argv"][-1] == "-"
    assert set(seen["env"]) == {"PATH", "LC_ALL"}


@needs_cc
def test_a_crashed_builds_leftover_is_removed_later(cache):
    cache.mkdir(mode=0o755)
    stale = cache / ".openshell-init-0123456789abcdef.999999"
    stale.write_bytes(b"half")
    os.utime(stale, (0, 0))
    fresh = cache / ".openshell-init-0123456789abcdef.999998"
    fresh.write_bytes(b"in progress")
    assert native_init.build(cache) is not None
    assert not stale.exists() and fresh.exists()


def test_a_relative_cache_directory_is_checked_from_the_root(tmp_path, monkeypatch):
    # "rel" and "." are root's alone, but "." sits in a directory anyone may write
    (tmp_path / "a" / "rel").mkdir(mode=0o755, parents=True)
    os.chmod(tmp_path / "a", 0o755)
    os.chmod(tmp_path, 0o777)
    monkeypatch.chdir(tmp_path / "a")
    assert not native_init._trusted_dir(native_init.Path("rel"))
    os.chmod(tmp_path, 0o755)
    assert native_init._trusted_dir(native_init.Path("rel"))
