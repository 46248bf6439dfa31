#!/usr/bin/env python3
"""Build the sandbox and gateway images without Docker or a registry, as OCI archives.

    .venv/bin/python deploy/docker/build_images.py [--out DIR] [--tag 0.1.0] [--import-to SOCKET]
    .venv/bin/python deploy/docker/build_images.py --site-only DIR   # only the gateway's site/ (for the Dockerfile)

- ``openshell/sandbox:TAG``: one layer, the docker driver's cached debootstrap
  root file system (``openshell_plugin_docker.images.rootfs_tar``; made once per
  machine, a few minutes), with the config of ``deploy/docker/sandbox/Dockerfile``.
- ``openshell/gateway:TAG``: that layer plus ``/opt/openshell/site`` (``pip
  install --target`` of openshell-core, the kubernetes driver when present and
  their dependencies, from the package index) and ``/usr/local/bin/openshell-healthz``;
  what ``deploy/docker/gateway/Dockerfile`` makes.

Archives go to ``DIR`` (default ``/var/cache/openshell/k8s/images``) as
``sandbox-TAG.tar`` and ``gateway-TAG.tar``; ``--import-to`` imports both into
that containerd (namespace ``k8s.io``) with ``ctr``. The host's Python must be
the image's (Debian bookworm, 3.11): the site directory holds compiled wheels.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path("/var/cache/openshell/k8s/images")
IMAGE_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]


def _oci() -> ModuleType:
    spec = importlib.util.spec_from_file_location("oci_image", REPO / "scripts" / "k8s" / "oci_image.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def gateway_sources() -> list[Path]:
    """The distributions installed into the gateway image: core, the kubernetes driver, and
    the isolation and policy plugins the supervisor loads (the image is also the sandbox
    pods' runtime: an init container copies its site into each pod)."""
    plugins = REPO / "openshell-plugins"
    dists = [REPO / "openshell-core", plugins / "drivers" / "kubernetes", *(plugins / "isolation" / n for n in ("landlock", "netns", "opa", "seccomp"))]
    return [d for d in dists if (d / "pyproject.toml").is_file()]


def build_site(dest: Path) -> None:
    """``pip install --target dest`` of the gateway's distributions and the ``kubernetes`` client."""
    if sys.version_info[:2] != (3, 11):
        raise SystemExit(f"the gateway image runs Debian bookworm's Python 3.11; this is {sys.version.split()[0]}")
    shutil.rmtree(dest, ignore_errors=True)
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(dest), *map(str, gateway_sources()), "kubernetes>=31"]
    subprocess.run(argv, check=True)


#: where build_images.py puts the shared libraries the site's extension modules need and the
#: base image lacks (e.g. regopy's libatomic); sandbox pods put it on LD_LIBRARY_PATH
SITE_LIBS = "openshell.libs"


def bundle_missing_libs(site: Path, rootfs: Path) -> list[str]:
    """Copy into ``site/openshell.libs`` every shared library that an extension module of
    ``site`` links (``ldd`` on this host, the same Debian release) and the root file system
    tar ``rootfs`` lacks. :returns: the names copied.

    :raises SystemExit: a library ``ldd`` cannot find on this host.
    """
    import tarfile

    with tarfile.open(rootfs) as tar:
        present = {Path(m.name).name for m in tar.getmembers() if ".so" in Path(m.name).name}
    wanted: dict[str, str] = {}
    for so in site.rglob("*.so*"):
        if not so.is_file() or so.is_symlink():
            continue
        out = subprocess.run(["ldd", str(so)], capture_output=True, text=True)
        for line in out.stdout.splitlines():
            name, arrow, rest = line.strip().partition(" => ")
            if not arrow:
                continue
            path = rest.split(" (", 1)[0].strip()
            if path == "not found":
                # bundled next to the module (auditwheel's *.libs) resolve by RUNPATH; anything else is an error
                raise SystemExit(f"{so}: needs {name}, which this host lacks")
            if str(site) not in path and name not in present:
                wanted[name] = path
    libs = site / SITE_LIBS
    libs.mkdir(exist_ok=True)
    for name, path in sorted(wanted.items()):
        shutil.copy2(Path(path).resolve(), libs / name)
    return sorted(wanted)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--tag", default="0.1.0")
    p.add_argument("--import-to", default=None, help="containerd socket to import the images into (namespace k8s.io)")
    p.add_argument("--site-only", type=Path, default=None, help="only write the gateway's site directory here")
    p.add_argument("--only", choices=["sandbox", "gateway"], default=None)
    a = p.parse_args(argv)
    if a.site_only:
        build_site(a.site_only)
        from openshell_plugin_docker.images import rootfs_tar

        copied = bundle_missing_libs(a.site_only, rootfs_tar(progress=lambda m: print(m, file=sys.stderr)))
        print(f"bundled for the base image: {', '.join(copied) or 'nothing'}", file=sys.stderr)
        return 0
    from openshell_plugin_docker.images import rootfs_tar

    oci = _oci()
    a.out.mkdir(parents=True, exist_ok=True)
    rootfs = rootfs_tar(progress=lambda m: print(m, file=sys.stderr))
    written: list[Path] = []
    if a.only in (None, "sandbox"):
        out = a.out / f"sandbox-{a.tag}.tar"
        oci.build(f"docker.io/openshell/sandbox:{a.tag}", [rootfs], {"Env": IMAGE_ENV, "WorkingDir": "/sandbox", "Cmd": ["/bin/bash"]}, out)
        written.append(out)
    if a.only in (None, "gateway"):
        with tempfile.TemporaryDirectory(dir=a.out) as tmp:
            layer = Path(tmp) / "layer"
            build_site(layer / "opt" / "openshell" / "site")
            copied = bundle_missing_libs(layer / "opt" / "openshell" / "site", rootfs)
            print(f"bundled for the base image: {', '.join(copied) or 'nothing'}", file=sys.stderr)
            bindir = layer / "usr" / "local" / "bin"
            bindir.mkdir(parents=True)
            shutil.copy2(REPO / "deploy" / "docker" / "gateway" / "openshell-healthz", bindir / "openshell-healthz")
            (layer / "var" / "lib" / "openshell").mkdir(parents=True)
            config = {
                "Env": [*IMAGE_ENV, "PYTHONPATH=/opt/openshell/site", "PYTHONDONTWRITEBYTECODE=1", f"LD_LIBRARY_PATH=/opt/openshell/site/{SITE_LIBS}"],
                "WorkingDir": "/var/lib/openshell",
                "Entrypoint": ["python3", "-m", "openshell.gateway"],
            }
            out = a.out / f"gateway-{a.tag}.tar"
            oci.build(f"docker.io/openshell/gateway:{a.tag}", [rootfs, layer], config, out)
            written.append(out)
    for out in written:
        print(out)
        if a.import_to:
            subprocess.run(["ctr", "--address", a.import_to, "-n", "k8s.io", "images", "import", str(out)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
