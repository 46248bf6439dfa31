"""Where the test cluster's tools are: the paths scripts/k8s/versions.sh pins.

Tests import this to find helm, kubectl and the cluster's kubeconfig, and to
skip with a reason naming the command that makes the missing piece.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VERSIONS = REPO / "scripts" / "k8s" / "versions.sh"
CHART = REPO / "deploy" / "helm" / "openshell"


def pinned() -> dict[str, str]:
    """``NAME=value`` assignments of versions.sh (defaults only; ``${VAR:-x}`` → x)."""
    out: dict[str, str] = {}
    for line in VERSIONS.read_text().splitlines():
        m = re.match(r"^([A-Z0-9_]+)=(\S+)", line)
        if not m:
            continue
        value = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", m.group(2))
        value = re.sub(r"\$\{?([A-Z0-9_]+)\}?", lambda v: out.get(v.group(1), ""), value.strip('"'))
        out[m.group(1)] = value
    return out


V = pinned()
CACHE = Path(os.environ.get("OPENSHELL_K8S_CACHE", V["K8S_CACHE"]))
RUN = Path(os.environ.get("OPENSHELL_K8S_RUN", V["K8S_RUN"]))


def helm() -> str | None:
    """The pinned helm build (``scripts/k8s/build.sh helm``), else ``$OPENSHELL_HELM``, else None."""
    built = CACHE / f"helm-{V['HELM_VERSION']}" / "bin" / "helm"
    if built.is_file():
        return str(built)
    return os.environ.get("OPENSHELL_HELM") or None


def kubectl() -> str | None:
    built = CACHE / V["K8S_VERSION"] / "bin" / "kubectl"
    return str(built) if built.is_file() else shutil.which("kubectl")


def kubeconfig() -> Path:
    return RUN / "admin.kubeconfig"


def cluster_up() -> bool:
    """True when start.sh's cluster answers ``/readyz``."""
    k = kubectl()
    if k is None or not kubeconfig().is_file():
        return False
    r = subprocess.run([k, "--kubeconfig", str(kubeconfig()), "get", "--raw", "/readyz"], capture_output=True, timeout=30)
    return r.returncode == 0
