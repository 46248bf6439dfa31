"""Sandbox images: the default image built without a registry, ``--from`` builds, listing.

The default image ``openshell/sandbox:latest`` is a Debian root file system made
by ``debootstrap`` from the Debian package mirror apt already uses, then
``docker import``-ed (no container registry is needed). It holds ``python``
(+ ``cloudpickle``), ``python3``, ``curl``, ``git``, ``node``,
``openssh-sftp-server``, CA certificates, a ``sandbox`` user (home
``/sandbox``) and ``/sandbox``.

The root file system is cached as a tar under ``/var/cache/openshell/images/``
named by a hash of its :data:`RECIPE` (``$OPENSHELL_IMAGE_CACHE`` moves it;
``.debs/`` keeps the downloaded packages), so building again on the same machine,
or into a fresh engine, imports the tar instead of running debootstrap again.
Every image this module makes carries the label ``openshell.image`` (``default``
or ``built``) so ``openshell images list`` shows only sandbox images.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_IMAGE = "openshell/sandbox:latest"
IMAGE_LABEL = "openshell.image"
RECIPE_LABEL = "openshell.recipe"
CACHE_DIR = Path(os.environ.get("OPENSHELL_IMAGE_CACHE", "/var/cache/openshell/images"))

#: what the default image is made of; its hash names the cached root file system
RECIPE: dict[str, Any] = {
    "suite": "bookworm",
    "variant": "minbase",
    "packages": [
        "python3",
        "python-is-python3",
        "python3-cloudpickle",
        "curl",
        "ca-certificates",
        "git",
        "nodejs",
        "openssh-sftp-server",
        "passwd",
    ],
    # run in the root file system (chroot) after debootstrap
    "setup": [
        "groupadd --system sandbox",
        "useradd --system --gid sandbox --home-dir /sandbox --no-create-home --shell /bin/bash sandbox",
        "install -d -o sandbox -g sandbox -m 0750 /sandbox",
        "apt-get clean",
        "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*",
    ],
    "changes": [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        "WORKDIR /sandbox",
        'CMD ["/bin/bash"]',
    ],
    "version": 1,
}

Progress = Callable[[str], None]


class ImageError(RuntimeError):
    """An image could not be built, found or inspected (the message names the fix)."""


def recipe_key(recipe: dict[str, Any] = RECIPE) -> str:
    """16 hex digits naming ``recipe`` (stable across runs and machines)."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _mirror() -> str:
    """The Debian mirror apt is configured with (the only registry debootstrap may use)."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if line.startswith("URIs:") and len(words) > 1 and not words[1].rstrip("/").endswith("-security"):
                return words[1]
            if words[:1] == ["deb"]:
                url = next((w for w in words[1:] if "://" in w), "")
                if url and not url.rstrip("/").endswith("-security"):
                    return url
    return "http://deb.debian.org/debian"


def rootfs_tar(progress: Progress = print, recipe: dict[str, Any] = RECIPE, cache_dir: Path = CACHE_DIR) -> Path:
    """The cached root file system tar of ``recipe``; made with debootstrap when absent.

    :raises ImageError: debootstrap is missing or failed (its last lines are in the message).
    """
    key = recipe_key(recipe)
    tar_path = cache_dir / f"sandbox-{recipe['suite']}-{key}.tar"
    if tar_path.is_file():
        return tar_path
    debootstrap = shutil.which("debootstrap") or ("/usr/sbin/debootstrap" if os.path.exists("/usr/sbin/debootstrap") else None)
    if debootstrap is None:
        raise ImageError("debootstrap not found; install it (apt-get install debootstrap) or run scripts/setup.sh")
    cache_dir.mkdir(parents=True, exist_ok=True)
    debs = cache_dir / "debs"
    debs.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=cache_dir) as tmp:
        root = Path(tmp) / "root"
        argv = [
            debootstrap,
            f"--variant={recipe['variant']}",
            f"--include={','.join(recipe['packages'])}",
            f"--cache-dir={debs}",
            recipe["suite"],
            str(root),
            _mirror(),
        ]
        progress(f"debootstrap {recipe['suite']} ({len(recipe['packages'])} packages) into {root}")
        _run(argv, "debootstrap")
        for step in recipe["setup"]:
            _run(["chroot", str(root), "/bin/sh", "-c", step], f"image setup step {step!r}")
        progress(f"packing the root file system into {tar_path}")
        partial = tar_path.with_suffix(".partial")
        _run(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(partial), "."], "tar")
        os.replace(partial, tar_path)
    return tar_path


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])[-600:]
        raise ImageError(f"{what} failed (exit {proc.returncode}): {tail}")


def build_default(client: Any, progress: Progress = print, *, tag: str = DEFAULT_IMAGE, recipe: dict[str, Any] = RECIPE) -> str:
    """Make ``tag`` in the engine of ``client`` (a ``docker.DockerClient``) from ``recipe``.

    Nothing is done when an image of the same recipe already has the tag.

    :returns: the image id.
    :raises ImageError: the root file system could not be made or imported.
    """
    import docker.errors

    key = recipe_key(recipe)
    try:
        img = client.images.get(tag)
        if img.labels.get(RECIPE_LABEL) == key:
            progress(f"{tag} is up to date (recipe {key})")
            return str(img.id)
    except docker.errors.ImageNotFound:
        pass
    tar_path = rootfs_tar(progress, recipe)
    progress(f"importing {tar_path.name} as {tag}")
    repo, _, version = tag.rpartition(":")
    changes = [*recipe["changes"], f"LABEL {IMAGE_LABEL}=default {RECIPE_LABEL}={key}"]
    try:
        client.api.import_image_from_file(str(tar_path), repository=repo, tag=version, changes=changes)
    except docker.errors.APIError as exc:
        raise ImageError(f"docker import of {tar_path} failed: {exc.explanation or exc}") from exc
    return str(client.images.get(tag).id)


@dataclass(frozen=True)
class ImageInfo:
    """One sandbox image as ``openshell images list`` shows it."""

    tags: tuple[str, ...]
    id: str
    kind: str  # "default" or "built"
    size: int  # bytes
    created: str


def list_images(client: Any) -> list[ImageInfo]:
    """The sandbox images (label ``openshell.image``) in the engine, newest first."""
    out = []
    for img in client.images.list(filters={"label": IMAGE_LABEL}):
        attrs = img.attrs
        out.append(
            ImageInfo(
                tags=tuple(img.tags),
                id=str(img.id).removeprefix("sha256:")[:12],
                kind=img.labels.get(IMAGE_LABEL, ""),
                size=int(attrs.get("Size") or 0),
                created=str(attrs.get("Created", ""))[:19],
            )
        )
    return sorted(out, key=lambda i: i.created, reverse=True)


MAX_CONTEXT = 512 * 1024 * 1024  # bytes: a larger build context is refused


def build_from(client: Any, source: str, progress: Progress = print) -> str:
    """Build the image ``--from`` names when it is a Dockerfile or a directory holding one.

    :param source: a Dockerfile path or a directory with a ``Dockerfile``.
    :returns: the built image's tag, ``openshell/built:<16 hex of the context>``.
    :raises ImageError: no Dockerfile there, or the build failed (the failing step's output).
    """
    import docker.errors

    path = Path(source)
    if path.is_dir():
        context, dockerfile = path, path / "Dockerfile"
    else:
        context, dockerfile = path.parent, path
    if not dockerfile.is_file():
        raise ImageError(f"{source}: no Dockerfile there; give an image reference, a Dockerfile or a directory holding one")
    digest = _context_digest(context, dockerfile)
    tag = f"openshell/built:{digest}"
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    progress(f"building {dockerfile} as {tag}")
    try:
        _, logs = client.images.build(
            path=str(context),
            dockerfile=str(dockerfile.resolve().relative_to(context.resolve())),
            tag=tag,
            labels={IMAGE_LABEL: "built"},
            rm=True,
            forcerm=True,
            network_mode="none",  # a build reaches nothing (no registry here; RUN steps stay offline)
        )
        for chunk in logs:
            line = str(chunk.get("stream", "")).rstrip()
            if line:
                progress(line)
    except docker.errors.BuildError as exc:
        tail = " | ".join(str(c.get("stream", c.get("error", ""))).strip() for c in list(exc.build_log)[-4:] if c)
        raise ImageError(f"building {dockerfile} failed: {exc.msg}" + (f" ({tail[-600:]})" if tail else "")) from exc
    except docker.errors.APIError as exc:
        raise ImageError(f"building {dockerfile} failed: {exc.explanation or exc}") from exc
    return tag


def _context_digest(context: Path, dockerfile: Path) -> str:
    """16 hex digits over the build context's paths, sizes and contents (bounded by :data:`MAX_CONTEXT`)."""
    h = hashlib.sha256()
    total = 0
    files = sorted(p for p in context.rglob("*") if p.is_file() and not p.is_symlink())
    if dockerfile.resolve() not in {f.resolve() for f in files}:
        files.append(dockerfile)
    for f in files:
        data = f.read_bytes()
        total += len(data)
        if total > MAX_CONTEXT:
            raise ImageError(f"build context {context} is larger than {MAX_CONTEXT // 2**20} MiB; build from a smaller directory")
        h.update(str(f.relative_to(context) if f.is_relative_to(context) else f).encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()[:16]


def tar_of(files: dict[str, tuple[bytes, int]], dirs: dict[str, int] | None = None) -> bytes:
    """A tar archive of ``{path: (data, mode)}`` files and ``{path: mode}`` directories
    (root-owned, directories first), for ``put_archive``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, mode in (dirs or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, 0, 0
            tar.addfile(info)
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), mode, 0, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
