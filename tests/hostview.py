"""What the host (root) sees of a test's own sandboxes, on either compute driver.

``local``: the sandbox's state directory is ``<gateway state>/sandboxes/<id>``.
``docker``: it is ``/var/lib/openshell/state`` inside the sandbox's container
(read through the engine's archive API); the container's processes are host
processes all the same, so a sandbox process is found by its (unique) argv.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any, Callable

#: the sandbox's state directory inside its container (docker driver)
CONTAINER_STATE = "/var/lib/openshell/state"


def sandbox_id(gw, name: str) -> str:
    return json.loads(gw.cli("sandbox", "get", name, "-o", "json", check=True).stdout)["id"]


def container(gw, name: str):
    """The docker container of sandbox ``name`` (docker driver only)."""
    import docker
    from openshell_plugin_docker import dockerd
    from openshell_plugin_docker.driver import LABEL_ID

    client = docker.DockerClient(base_url=dockerd.engine_url())
    found = client.containers.list(all=True, filters={"label": f"{LABEL_ID}={sandbox_id(gw, name)}"})
    assert len(found) == 1, found
    return found[0]


def read_state_file(gw, name: str, relpath: str) -> bytes:
    """A file of the sandbox's state directory (``context.json``, ``cgroup.json``...)."""
    if gw.driver != "docker":
        return (gw.state_dir / "sandboxes" / sandbox_id(gw, name) / relpath).read_bytes()
    stream, _ = container(gw, name).get_archive(f"{CONTAINER_STATE}/{relpath}")
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.extractfile(os.path.basename(relpath))
        assert member is not None
        return member.read()


def context(gw, name: str) -> dict:
    """The sandbox's ``context.json`` (its network namespace names under ``netns`` / ``extra``)."""
    return json.loads(read_state_file(gw, name, "context.json"))


def host_paths(gw) -> list[str]:
    """Host paths that must never show in a sandbox's ``/proc/self/mountinfo``: the
    gateway's state directory, the checkout and the interpreter OpenShell runs from
    (bound into docker containers for the supervisor's runtime), the docker SSH
    socket directories and the engine's per-container files."""
    import sys

    paths = [str(gw.state_dir), str(Path(__file__).resolve().parents[1]), sys.base_prefix, "/run/openshell/docker"]
    if gw.driver == "docker":
        paths.append("/docker/containers/")
    return paths


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def host_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def pids_running(argv: list[str]) -> list[int]:
    """Host pids whose command line is exactly ``argv`` (tests use a unique marker argument)."""
    return [p for p in host_pids() if cmdline(p) == argv]


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
