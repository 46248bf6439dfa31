"""A private Docker Engine for OpenShell: ``python -m openshell_plugin_docker.dockerd start|stop|status``.

The ``docker`` driver never touches a host's own Docker: unless
``OPENSHELL_DOCKER_HOST`` names an engine, it talks to a ``dockerd`` of its own,
with its own containerd, data root, exec root and unix socket::

    /var/lib/openshell-docker/            --data-root (images, containers)
    /run/openshell-docker/docker.sock     the API socket (root only, 0660 root:root)
    /run/openshell-docker/containerd.sock its containerd
    /run/openshell-docker/*.pid, *.log    pid files and logs

Started with ``--iptables=false --ip6tables=false --ip-masq=false --bridge=none``:
no host firewall rules, no ``docker0`` bridge, no NAT. Sandbox containers use
the host's network namespace (the supervisor makes each sandbox's own network
namespaces inside, as with ``local``), so no Docker network is needed.

Both daemons run detached (their own session) and outlive the command that
started them; ``stop`` ends them (SIGTERM, SIGKILL after a grace period).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DATA_ROOT = Path(os.environ.get("OPENSHELL_DOCKERD_DATA_ROOT", "/var/lib/openshell-docker"))
RUN_DIR = Path(os.environ.get("OPENSHELL_DOCKERD_RUN_DIR", "/run/openshell-docker"))
START_TIMEOUT = 60.0  # seconds for the API to answer after dockerd starts
STOP_GRACE = 20.0  # seconds between SIGTERM and SIGKILL

_CONTAINERD_CONFIG = """version = 2
# only what dockerd needs: no CRI (Kubernetes) plugin, no metrics listener
disabled_plugins = ["io.containerd.grpc.v1.cri"]
"""


class DockerdError(RuntimeError):
    """The private engine could not be started or stopped (the message names the fix)."""


@dataclass(frozen=True)
class Paths:
    """Where one private engine keeps its files (see the module docstring)."""

    data_root: Path = DATA_ROOT
    run_dir: Path = RUN_DIR

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    def pidfile(self, daemon: str) -> Path:
        return self.run_dir / f"{daemon}.pid"

    def logfile(self, daemon: str) -> Path:
        return self.run_dir / f"{daemon}.log"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"


def engine_url() -> str:
    """The Docker API URL the driver uses: ``$OPENSHELL_DOCKER_HOST``, else the private engine's socket."""
    return os.environ.get("OPENSHELL_DOCKER_HOST") or Paths().url


def _pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def _ping(url: str, timeout: float = 2.0) -> bool:
    import docker

    try:
        client = docker.DockerClient(base_url=url, timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure: not (yet) answering
        return False


def _tool(name: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise DockerdError(f"{name} not found; install Debian's docker.io (apt-get install docker.io) or run scripts/setup.sh")
    return path


def _spawn(argv: list[str], log: Path) -> int:
    with open(log, "ab", buffering=0) as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, close_fds=True)
    return proc.pid


def _wait_for(check: Callable[[], bool], timeout: float, what: str, log: Path, pid: int) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not _alive(pid):
            break
        time.sleep(0.1)
    raise DockerdError(f"{what} did not come up within {timeout:.0f}s: {_tail(log)} (log: {log})")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:])[-600:] or "empty log"


def status(paths: Paths = Paths()) -> bool:
    """True when the private engine answers on its socket."""
    return paths.socket.exists() and _ping(paths.url)


def start(paths: Paths = Paths()) -> str:
    """Start the private containerd + dockerd unless they already answer.

    :returns: the engine's API URL (``unix://…/docker.sock``).
    :raises DockerdError: a daemon is missing or did not come up (the log tail is in the message).
    """
    if status(paths):
        return paths.url
    dockerd, containerd = _tool("dockerd"), _tool("containerd")
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.run_dir, 0o700)
    paths.data_root.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.data_root, 0o711)
    # A daemon of an earlier start that no longer answers: end it first.
    stop(paths)
    cpid = _pid(paths.pidfile("containerd"))
    if cpid is None or not paths.containerd_socket.exists():
        cfg = paths.run_dir / "containerd.toml"
        cfg.write_text(_CONTAINERD_CONFIG)
        argv = [
            containerd,
            "--config", str(cfg),
            "--address", str(paths.containerd_socket),
            "--root", str(paths.data_root / "containerd"),
            "--state", str(paths.run_dir / "containerd"),
        ]  # fmt: skip
        cpid = _spawn(argv, paths.logfile("containerd"))
        paths.pidfile("containerd").write_text(str(cpid))
        _wait_for(paths.containerd_socket.exists, START_TIMEOUT, "containerd", paths.logfile("containerd"), cpid)
    argv = [
        dockerd,
        "--host", paths.url,
        "--containerd", str(paths.containerd_socket),
        "--data-root", str(paths.data_root / "docker"),
        "--exec-root", str(paths.run_dir / "exec"),
        "--pidfile", str(paths.pidfile("dockerd")),
        "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--bridge=none",
        "--userland-proxy=false", "--group", "root",
    ]  # fmt: skip
    # A private config directory: no /etc/docker/daemon.json of the host applies.
    cfgdir = paths.run_dir / "etc"
    cfgdir.mkdir(exist_ok=True)
    (cfgdir / "daemon.json").write_text("{}\n")
    argv += ["--config-file", str(cfgdir / "daemon.json")]
    dpid = _spawn(argv, paths.logfile("dockerd"))
    _wait_for(lambda: paths.socket.exists() and _ping(paths.url), START_TIMEOUT, "dockerd", paths.logfile("dockerd"), dpid)
    return paths.url


def stop(paths: Paths = Paths()) -> bool:
    """Stop the private dockerd, then its containerd. Idempotent.

    :returns: True when a daemon was running.
    """
    ran = False
    for daemon in ("dockerd", "containerd"):
        pid = _pid(paths.pidfile(daemon))
        if pid is None:
            continue
        ran = True
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + STOP_GRACE
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        paths.pidfile(daemon).unlink(missing_ok=True)
    return ran


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openshell_plugin_docker.dockerd", description="OpenShell's private Docker Engine")
    parser.add_argument("action", choices=("start", "stop", "status"))
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            print(start())
        elif args.action == "stop":
            print("stopped" if stop() else "not running")
        else:
            up = status()
            print("running" if up else "not running")
            return 0 if up else 3
    except DockerdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
