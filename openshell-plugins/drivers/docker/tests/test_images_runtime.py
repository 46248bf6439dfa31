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
