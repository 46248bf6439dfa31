"""scripts/k8s/oci_image.py writes an OCI archive that containerd can import:
content-addressed blobs whose digests match, the image name as the
io.containerd.image.name annotation, root-owned layer files, the config given."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from k8s_env import REPO

SCRIPT = REPO / "scripts" / "k8s" / "oci_image.py"


def test_archive_is_a_consistent_oci_layout(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "hello").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "hello").chmod(0o755)
    out = tmp_path / "img.tar"
    argv = [
        sys.executable,
        str(SCRIPT),
        "--name",
        "docker.io/openshell/test:1",
        "--layer",
        str(root),
        "--entrypoint",
        "/bin/hello",
        "--user",
        "65535:65535",
        "--out",
        str(out),
    ]
    subprocess.run(argv, check=True, capture_output=True)
    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]

    def blob(digest: str) -> bytes:
        data = files[f"blobs/sha256/{digest.split(':')[1]}"]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        return data

    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (desc,) = json.loads(files["index.json"])["manifests"]
    assert desc["annotations"]["io.containerd.image.name"] == "docker.io/openshell/test:1"
    manifest = json.loads(blob(desc["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    assert config["config"]["Entrypoint"] == ["/bin/hello"] and config["config"]["User"] == "65535:65535"
    (layer_desc,) = manifest["layers"]
    assert config["rootfs"]["diff_ids"] == [layer_desc["digest"]]
    layer = blob(layer_desc["digest"])
    with tarfile.open(fileobj=io.BytesIO(layer)) as lt:
        members = {m.name: m for m in lt.getmembers()}
    assert members["bin/hello"].uid == 0 and members["bin/hello"].mode & 0o777 == 0o755
