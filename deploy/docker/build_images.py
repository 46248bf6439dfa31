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
    """The distributions installed into the gateway image (the kubernetes driver once it exists)."""
    dists = [REPO / "openshell-core", REPO / "openshell-plugins" / "drivers" / "kubernetes"]
    return [d for d in dists if (d / "pyproject.toml").is_file()]


def build_site(dest: Path) -> None:
    """``pip install --target dest`` of the gateway's distributions and the ``kubernetes`` client."""
    if sys.version_info[:2] != (3, 11):
        raise SystemExit(f"the gateway image runs Debian bookworm's Python 3.11; this is {sys.version.split()[0]}")
    shutil.rmtree(dest, ignore_errors=True)
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(dest), *map(str, gateway_sources()), "kubernetes>=31"]
    subprocess.run(argv, check=True)


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
            bindir = layer / "usr" / "local" / "bin"
            bindir.mkdir(parents=True)
            shutil.copy2(REPO / "deploy" / "docker" / "gateway" / "openshell-healthz", bindir / "openshell-healthz")
            (layer / "var" / "lib" / "openshell").mkdir(parents=True)
            config = {
                "Env": [*IMAGE_ENV, "PYTHONPATH=/opt/openshell/site", "PYTHONDONTWRITEBYTECODE=1"],
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
