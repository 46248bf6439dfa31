#!/usr/bin/env python3
"""Write an OCI image archive (an OCI layout in a tar) that `ctr images import` reads.

No registry and no Docker are needed: the layers are plain (uncompressed) tars
made from directories or taken from existing tar files, and the config is
written here. Standard library only, so it runs before any venv exists.

    oci_image.py --name docker.io/openshell/pause:3.10 --layer DIR|FILE.tar [--layer ...]
                 [--entrypoint /pause] [--cmd ARG ...] [--user 65535:65535]
                 [--env K=V ...] [--workdir /] [--label K=V ...] --out IMAGE.tar

Directory layers are stored with owner root:root and their modes kept; the
image's ref name (annotation io.containerd.image.name) is --name.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def _dir_layer(src: Path, dest: Path) -> None:
    """Tar ``src``'s contents (paths relative to it) into ``dest``, owned by root."""

    def reset(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        ti.mtime = 0
        return ti

    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(src.iterdir()):
            tar.add(entry, arcname=entry.name, filter=reset)


def _sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest(), path.stat().st_size


def build(name: str, layers: list[Path], config: dict, out: Path) -> str:
    """Write the archive to ``out`` and return the manifest digest."""
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        root = Path(tmp)
        blobs = root / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        layer_descs, diff_ids = [], []
        for i, src in enumerate(layers):
            if src.is_dir():
                staged = root / f"layer{i}.tar"
                _dir_layer(src, staged)
            else:
                staged = src
            digest, size = _sha256_file(staged)
            target = blobs / digest.split(":")[1]
            if staged.parent == root:
                staged.rename(target)
            else:
                shutil.copyfile(staged, target)
            layer_descs.append({"mediaType": OCI_LAYER, "digest": digest, "size": size})
            diff_ids.append(digest)  # uncompressed: the diff id is the blob digest
        image_config = {
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "openshell scripts/k8s/oci_image.py"}],
        }

        def blob(data: bytes) -> tuple[str, int]:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            (blobs / digest.split(":")[1]).write_bytes(data)
            return digest, len(data)

        cfg_digest, cfg_size = blob(json.dumps(image_config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cfg_digest, "size": cfg_size},
            "layers": layer_descs,
        }
        man_digest, man_size = blob(json.dumps(manifest, sort_keys=True).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": man_digest,
                    "size": man_size,
                    "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]},
                }
            ],
        }
        (root / "index.json").write_text(json.dumps(index))
        (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        partial = out.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            for entry in ("oci-layout", "index.json", "blobs"):
                tar.add(root / entry, arcname=entry)
        os.replace(partial, out)
    return man_digest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="full image name, e.g. docker.io/openshell/pause:3.10")
    p.add_argument("--layer", action="append", type=Path, required=True, help="a directory or an uncompressed layer tar (in order)")
    p.add_argument("--entrypoint", nargs="*", default=None)
    p.add_argument("--cmd", nargs="*", default=None)
    p.add_argument("--user", default=None)
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--workdir", default=None)
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    config: dict = {"Env": a.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    if a.entrypoint:
        config["Entrypoint"] = a.entrypoint
    if a.cmd:
        config["Cmd"] = a.cmd
    if a.user:
        config["User"] = a.user
    if a.workdir:
        config["WorkingDir"] = a.workdir
    if a.label:
        config["Labels"] = dict(kv.split("=", 1) for kv in a.label)
    for layer in a.layer:
        if not layer.exists():
            print(f"error: layer {layer} does not exist", file=sys.stderr)
            return 2
    digest = build(a.name, a.layer, config, a.out.absolute())
    print(f"{a.out}: {a.name} {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
