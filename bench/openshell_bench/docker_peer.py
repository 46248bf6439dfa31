"""A private, throw-away Docker daemon for the lifecycle figure's ``docker run --rm`` peer.

Only used with ``--with-docker`` (or ``OPENSHELL_BENCH_DOCKER=1``). Then the
harness, and nothing else:

1. ``apt-get install docker.io debootstrap`` when ``dockerd`` or
   ``debootstrap`` is missing (the only global change, and only when asked);
2. builds a root filesystem once with ``debootstrap --variant=minbase
   --include=python3,ca-certificates bookworm`` from Debian's mirror and caches
   it as a tarball in ``.nox/bench-peers`` (later runs reuse it; never a
   registry pull);
3. starts its own ``dockerd`` with every path private to a temp dir
   (``--data-root``, ``--exec-root``, ``--pidfile``, a unix socket ``--host``),
   its own containerd namespace and cgroup parent, and no networking changes on
   the host (``--iptables=false --ip-masq=false --bridge=none
   --ip-forward=false``; ``net.ipv4.ip_forward`` is put back if it changed anyway);
   containers are run with ``--network none``;
4. ``docker import``s the tarball as ``openshell-bench:latest``;
5. on ``close``: stops that ``dockerd`` (its process group), unmounts whatever
   it left mounted under the temp dir and removes the dir, and removes
   ``/run/containerd/s`` (the shims' fixed socket dir) if it made it and it is empty.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openshell_bench.peers import PEER_VENV, apt_install
from openshell_bench.results import Skip

IMAGE = "openshell-bench:latest"
ROOTFS_TAR = PEER_VENV / "debootstrap-bookworm-minbase.tar"
DEBOOTSTRAP = ["--variant=minbase", "--include=python3,ca-certificates", "bookworm"]
MIRROR = "http://deb.debian.org/debian"
ENV_FLAG = "OPENSHELL_BENCH_DOCKER"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
SHIM_DIR = Path("/run/containerd")  # containerd's shims put sockets in /run/containerd/s whatever the roots


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _log(msg: str) -> None:
    print(f"[bench] docker: {msg}", file=sys.stderr, flush=True)


def _tail(exc: BaseException) -> str:
    """The last line of a failed command's output, else the exception text."""
    out = getattr(exc, "stderr", None) or getattr(exc, "stdout", None) or b""
    if isinstance(out, bytes):
        out = out.decode(errors="replace")
    lines = [ln for ln in str(out).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else str(exc))[:200]


def ensure_packages() -> None:
    """Install Debian's ``docker.io`` and ``debootstrap`` when their binaries are missing.

    :raises Skip: apt-get failed (its last output line in the reason).
    """
    missing = [pkg for exe, pkg in (("dockerd", "docker.io"), ("debootstrap", "debootstrap")) if shutil.which(exe) is None]
    if not missing:
        return
    apt_install(missing)  # waits (bounded) for another apt run's lock; never starts dockerd


def rootfs_tarball() -> Path:
    """The cached Debian bookworm minbase root filesystem (built on first use, ~35 s).

    :returns: path of a tar archive of the root filesystem (``.nox/bench-peers``).
    :raises Skip: debootstrap or tar failed.
    """
    if ROOTFS_TAR.exists():
        return ROOTFS_TAR
    ROOTFS_TAR.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="osbench-rootfs-"))
    try:
        _log(f"debootstrap {' '.join(DEBOOTSTRAP)} (once; cached as {ROOTFS_TAR}) ...")
        subprocess.run(["debootstrap", *DEBOOTSTRAP, str(work / "root"), MIRROR], check=True, capture_output=True, timeout=1200)
        partial = ROOTFS_TAR.with_suffix(".tar.partial")
        subprocess.run(["tar", "-C", str(work / "root"), "--numeric-owner", "-cf", str(partial), "."], check=True, capture_output=True, timeout=600)
        partial.rename(ROOTFS_TAR)  # atomic: a crash never leaves a half tarball under the final name
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        raise Skip(f"debootstrap of the docker image failed: {_tail(exc)}") from None
    finally:
        _unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
    return ROOTFS_TAR


def _unmount_under(root: Path) -> None:
    """Lazily unmount every mount point below ``root`` (deepest first); best effort."""
    prefix = str(root.resolve()) + "/"
    try:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
    except OSError:
        return
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False, timeout=30)


class PrivateDocker:
    """A ``dockerd`` of our own in a temp dir, with ``IMAGE`` imported.

    ``docker`` is the argv prefix that talks to it (``docker --host unix://…``).
    Use as a context manager; ``close`` is idempotent.

    :raises Skip: installing, building the image, or starting the daemon failed
        (everything started so far is torn down first).
    """

    def __init__(self, start_timeout: float = 60.0) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="osbench-docker-"))
        self.proc: subprocess.Popen | None = None
        self.sock = self.dir / "docker.sock"
        self.docker = [shutil.which("docker") or "docker", "--host", f"unix://{self.sock}"]
        self._ip_forward = _read(IP_FORWARD)
        self._shim_dir_existed = SHIM_DIR.exists()
        try:
            ensure_packages()
            tarball = rootfs_tarball()
            self._start(start_timeout)
            _log(f"docker import {tarball.name} {IMAGE} ...")
            try:
                subprocess.run([*self.docker, "import", str(tarball), IMAGE], check=True, capture_output=True, timeout=600)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                raise Skip(f"docker import failed: {_tail(exc)}") from None
        except BaseException:
            self.close()
            raise

    def _start(self, timeout: float) -> None:
        tag = f"osbench-{os.getpid()}"
        argv = [
            shutil.which("dockerd") or "dockerd",
            "--data-root",
            str(self.dir / "data"),
            "--exec-root",
            str(self.dir / "exec"),
            "--pidfile",
            str(self.dir / "dockerd.pid"),
            "--host",
            f"unix://{self.sock}",
            "--iptables=false",
            "--ip-masq=false",
            "--bridge=none",
            "--ip-forward=false",
            "--containerd-namespace",
            tag,
            "--containerd-plugins-namespace",
            f"{tag}-plugins",
            "--cgroup-parent",
            tag,
            "--storage-driver",
            "overlay2",
        ]
        _log("starting a private dockerd ...")
        self.log = open(self.dir / "dockerd.log", "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Skip(f"dockerd exited with {self.proc.returncode}: {self._log_tail()}")
            if self.sock.exists():
                info = subprocess.run([*self.docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30, check=False)
                if info.returncode == 0:
                    self.version = info.stdout.strip()
                    return
            time.sleep(0.2)
        raise Skip(f"dockerd did not answer within {timeout:g}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return (self.dir / "dockerd.log").read_text(errors="replace").strip()[-300:]
        except OSError:
            return ""

    def close(self) -> None:
        """Stop our dockerd (and its managed containerd), unmount and remove the temp dir."""
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.proc is not None:
            try:  # leftovers of our own session (the managed containerd), never anything else
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()
            self.log = None
        _unmount_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._ip_forward is not None and _read(IP_FORWARD) != self._ip_forward:
            try:
                IP_FORWARD.write_text(self._ip_forward)
            except OSError:
                pass
        if not self._shim_dir_existed:
            for d in (SHIM_DIR / "s", SHIM_DIR):
                try:
                    d.rmdir()  # only when empty: another containerd's sockets are never touched
                except OSError:
                    break

    def __enter__(self) -> PrivateDocker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
