"""Pure parts of the docker plugin: recipe keys, archives, build-context hashes, ldd parsing."""

from __future__ import annotations

import io
import tarfile

import pytest
from openshell_plugin_docker import images, runtime


def test_recipe_key_is_stable_and_follows_the_recipe():
    assert images.recipe_key() == images.recipe_key(dict(images.RECIPE))
    changed = {**images.RECIPE, "packages": [*images.RECIPE["packages"], "jq"]}
    assert images.recipe_key(changed) != images.recipe_key()


def test_tar_of_makes_root_owned_files_and_directories_with_their_modes():
    data = images.tar_of({"d/f": (b"secret", 0o600)}, dirs={"d": 0o700})
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        d, f = tar.getmember("d"), tar.getmember("d/f")
        assert d.isdir() and d.mode == 0o700 and (d.uid, d.gid) == (0, 0)
        assert f.mode == 0o600 and tar.extractfile(f).read() == b"secret"  # type: ignore[union-attr]


def test_context_digest_changes_with_content(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM openshell/sandbox:latest\n")
    first = images._context_digest(tmp_path, tmp_path / "Dockerfile")
    assert first == images._context_digest(tmp_path, tmp_path / "Dockerfile")
    (tmp_path / "app.py").write_text("print(1)\n")
    assert images._context_digest(tmp_path, tmp_path / "Dockerfile") != first


def test_build_from_a_directory_without_a_dockerfile_is_refused(tmp_path):
    with pytest.raises(images.ImageError, match="no Dockerfile"):
        images.build_from(object(), str(tmp_path))


def test_ldd_lines_are_parsed():
    m = runtime._LDD_LINE.match("\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f1535800000)")
    assert m and m.group(1) == "libz.so.1" and m.group(2) == "/lib/x86_64-linux-gnu/libz.so.1"
    m = runtime._LDD_LINE.match("\t/lib64/ld-linux-x86-64.so.2 (0x00007f1535e09000)")
    assert m and m.group(3) == "/lib64/ld-linux-x86-64.so.2"
    assert runtime._LDD_LINE.match("\tlinux-vdso.so.1 (0x00007ffd)") is None


def _runtime_dir(root, name: str, age: float, now: float):
    import os

    d = root / name
    (d / "bin").mkdir(parents=True)
    (d / "bin" / "python3").write_bytes(b"x")
    os.utime(d, (now - age, now - age))
    return d


def test_prune_removes_old_runtimes_but_not_the_current_a_mounted_or_a_recently_used_one(tmp_path):
    import time

    now = time.time()
    current = _runtime_dir(tmp_path, "runtime-current", 99999, now)
    mounted = _runtime_dir(tmp_path, "runtime-mounted", 99999, now)
    recent = _runtime_dir(tmp_path, "runtime-recent", 60, now)
    old = _runtime_dir(tmp_path, "runtime-old", 99999, now)
    partial = _runtime_dir(tmp_path, ".runtime-abc123", 99999, now)
    building = _runtime_dir(tmp_path, ".runtime-def456", 5, now)
    other = _runtime_dir(tmp_path, "images", 99999, now)  # not a runtime: never touched
    removed = runtime.prune_runtimes(current, {str(mounted / "."), "/elsewhere"}, cache_root=tmp_path, now=now)
    assert sorted(p.name for p in removed) == [".runtime-abc123", "runtime-old"]
    assert not old.exists() and not partial.exists()
    assert current.exists() and mounted.exists() and recent.exists() and building.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["runtime-current", "runtime-mounted", "runtime-recent", ".runtime-def456", "images"])


def test_ensure_runtime_marks_its_runtime_used(tmp_path, monkeypatch):
    import os
    import time

    monkeypatch.setattr(runtime, "_build", lambda target, *a: _runtime_dir(target.parent, target.name, 0, time.time()))
    rt = runtime.ensure_runtime(tmp_path)
    os.utime(rt.path, (1, 1))  # as if last used long ago
    assert runtime.ensure_runtime(tmp_path).path == rt.path
    assert time.time() - rt.path.stat().st_mtime < 600
    assert runtime.prune_runtimes(tmp_path / "runtime-other", set(), cache_root=tmp_path) == []


def test_the_find_library_hook_patches_ctypes_util_only_when_something_imports_it(tmp_path):
    import json
    import subprocess
    import sys

    hook = tmp_path / "_openshell_runtime.py"
    hook.write_text(runtime.find_library_hook_source())
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import _openshell_runtime, json; "
        "early = 'ctypes.util' in sys.modules; import ctypes.util; "
        "print(json.dumps([early, ctypes.util.find_library.__qualname__, ctypes.util.find_library('c')]))"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code, str(tmp_path)], capture_output=True, text=True, check=True, timeout=60)
    early, qualname, libc = json.loads(out.stdout)
    assert early is False  # the start-up stays cheap
    assert qualname.startswith("_patch.")  # bundle first ...
    assert libc and "libc.so" in libc  # ... and the image's own lookup behind it


def test_a_new_hook_makes_a_new_runtime_key(tmp_path, monkeypatch):
    exe = tmp_path / "python3"
    exe.write_bytes(b"x")
    first = runtime._key(str(exe), "/stdlib", [], [])
    monkeypatch.setattr(runtime, "_PTH_HOOK", runtime._PTH_HOOK + "\n# changed\n")
    assert runtime._key(str(exe), "/stdlib", [], []) != first
