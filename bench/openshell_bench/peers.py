"""Peer proxies started and stopped by the harness, each with its own temp config.

All listen on 127.0.0.1 only and run in the foreground as children of the
harness (no daemons are left behind: ``Peer.__exit__`` kills the whole process
group). ``splice-ref``: the bench's own minimal C relay (``splice_ref.c``,
compiled with ``gcc`` into ``.nox/bench-peers``), the ceiling of any proxy that
relays bytes between two TCP connections. Debian peers: ``tinyproxy``,
``squid``, installed by the harness with ``apt-get`` when missing
(``apt_install``: waits, bounded, for another apt/dpkg run's lock like
``scripts/setup.sh``, and never starts the packages' services). PyPI peers: ``proxy.py``, ``mitmproxy``, installed into a separate
venv (``.nox/bench-peers``) that ``peer_venv()`` makes on first use, so they
never touch the product venv.

Every peer is a plain CONNECT proxy here (no caching, no interception) except
``mitmproxy_intercept`` (TLS interception, for the inspection figure).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from openshell_bench.env import REPO, free_port
from openshell_bench.results import Skip

PEER_VENV = REPO / ".nox" / "bench-peers"
APT_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock")
APT_WAIT = float(os.environ.get("OPENSHELL_APT_WAIT", "300"))  # seconds another apt run may hold the lock
POLICY_RC = Path("/usr/sbin/policy-rc.d")
PEER_PACKAGES = ("proxy.py", "mitmproxy", "py-spy")
PEERS = ("splice-ref", "tinyproxy", "squid", "proxy.py", "mitmproxy")
SPLICE_REF_SRC = Path(__file__).with_name("splice_ref.c")


def _apt_locked() -> bool:
    """True while another apt/dpkg run holds one of ``APT_LOCKS`` (the same test as scripts/setup.sh)."""
    for path in APT_LOCKS:
        try:
            with open(path, "a") as f:
                fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file closes
        except FileNotFoundError:
            continue
        except OSError:
            return True
    return False


def _apt(*args: str, timeout: float = 900) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "-o", f"DPkg::Lock::Timeout={int(APT_WAIT)}", *args], check=True, capture_output=True, timeout=timeout, env=env)


def apt_install(packages: Sequence[str], wait: float | None = None) -> None:
    """``apt-get install`` Debian ``packages`` (no recommends), without starting their services.

    Waits up to ``wait`` seconds (default ``$OPENSHELL_APT_WAIT`` or 300) for
    another apt/dpkg run to release its lock; runs ``apt-get update`` and tries
    once more when the package lists are stale. While it installs, a temporary
    ``/usr/sbin/policy-rc.d`` (exit 101, unless one exists) keeps the packages'
    services (squid's daemon on port 3128) from starting: the bench starts its
    own instances.

    :raises Skip: not root, the lock stayed held, or apt-get failed (its last line in the reason).
    """
    if os.geteuid() != 0:
        raise Skip(f"{' '.join(packages)} not installed, and installing needs root (apt-get install {' '.join(packages)})")
    limit = APT_WAIT if wait is None else wait
    deadline = time.monotonic() + limit
    told = False
    while _apt_locked():
        if time.monotonic() >= deadline:
            raise Skip(f"the apt/dpkg lock was still held after {limit:g}s; install {' '.join(packages)} when it is free")
        if not told:
            print(f"[bench] another apt/dpkg run holds its lock; waiting up to {limit:g}s", file=sys.stderr, flush=True)
            told = True
        time.sleep(2)
    print(f"[bench] apt-get install {' '.join(packages)} ...", file=sys.stderr, flush=True)
    made_policy = False
    try:
        if not POLICY_RC.exists():
            POLICY_RC.write_text("#!/bin/sh\n# written by the OpenShell bench while it installs peers; removed after\nexit 101\n")
            POLICY_RC.chmod(0o755)
            made_policy = True
        try:
            _apt("install", "-y", "-q", "--no-install-recommends", *packages)
        except subprocess.CalledProcessError:
            _apt("update", "-q")  # stale or missing package lists
            _apt("install", "-y", "-q", "--no-install-recommends", *packages)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        out = getattr(exc, "stderr", None) or b""
        lines = [ln for ln in (out.decode(errors="replace") if isinstance(out, bytes) else str(out)).splitlines() if ln.strip()]
        raise Skip(f"apt-get install {' '.join(packages)} failed: {(lines[-1] if lines else str(exc))[:200]}") from None
    finally:
        if made_policy:
            POLICY_RC.unlink(missing_ok=True)


def peer_venv() -> Path:
    """The peers' venv (made and filled with ``PEER_PACKAGES`` on first use); its bin dir.

    :raises Skip: the venv or the installs failed (pip's last line in the reason).
    """
    bindir = PEER_VENV / "bin"
    if all((bindir / exe).exists() for exe in ("proxy", "mitmdump", "py-spy")):
        return bindir
    try:
        if not (bindir / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True, capture_output=True, timeout=300)
        subprocess.run([str(bindir / "pip"), "install", "-q", *PEER_PACKAGES], check=True, capture_output=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        tail = (getattr(exc, "stderr", b"") or b"").decode(errors="replace").strip().splitlines()[-1:] or [str(exc)]
        raise Skip(f"could not prepare {PEER_VENV}: {tail[0]}") from None
    return bindir


class Peer:
    """One running peer proxy. ``address`` is ``127.0.0.1:PORT``.

    :param name: one of ``PEERS`` or ``mitmproxy_intercept``.
    :param upstream_ca: for ``mitmproxy_intercept``: the CA that signed the upstream
        (verified, never skipped).
    :raises Skip: the peer is not installed or did not start listening.
    """

    def __init__(self, name: str, *, upstream_ca: str | None = None) -> None:
        self.name = name
        self.port = free_port()
        method = name.replace(".", "").replace("-", "_")  # "proxy.py" -> proxypy, "splice-ref" -> splice_ref
        self.dir = Path(tempfile.mkdtemp(prefix=f"osbench-{method}-"))
        os.chmod(self.dir, 0o777)  # tinyproxy and squid drop to an unprivileged user
        self.proc: subprocess.Popen | None = None
        self.upstream_ca = upstream_ca
        try:
            argv = getattr(self, "_argv_" + method)()
            self.log = open(self.dir / "peer.log", "wb")
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dir)
            self._wait_listening()
        except BaseException:
            self.close()
            raise

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` where the peer listens (what the load client dials)."""
        return f"127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        """mitmproxy's CA certificate (clients of ``mitmproxy_intercept`` trust it)."""
        return str(self.dir / "conf" / "mitmproxy-ca-cert.pem")

    # ------------------------------------------------------------------ configs

    def _need(self, exe: str, install: str) -> str:
        path = shutil.which(exe) or (exe if os.path.exists(exe) else None)
        if path is None:
            raise Skip(f"{exe} not installed ({install})")
        return path

    def _debian(self, exe: str, package: str) -> str:
        """``exe``'s path, installing Debian ``package`` first when it is missing (``apt_install``)."""

        def find() -> str | None:
            return shutil.which(exe) or next((p for d in ("/usr/sbin", "/usr/bin") if os.access(p := f"{d}/{exe}", os.X_OK)), None)

        if find() is None:
            apt_install([package])
        return self._need(find() or exe, f"apt-get install {package}")

    def _argv_splice_ref(self) -> list[str]:
        """Compile ``splice_ref.c`` when the binary is missing or older than the source.

        :raises Skip: no ``gcc``, or the compile failed (gcc's first error line in the reason).
        """
        exe = PEER_VENV / "splice-ref"
        if not exe.exists() or exe.stat().st_mtime < SPLICE_REF_SRC.stat().st_mtime:
            gcc = self._need("gcc", "apt-get install gcc")
            exe.parent.mkdir(parents=True, exist_ok=True)
            tmp = exe.with_name(f".splice-ref.{os.getpid()}")  # a half-written binary is never run
            try:
                subprocess.run([gcc, "-O2", "-pthread", "-o", str(tmp), str(SPLICE_REF_SRC)], check=True, capture_output=True, timeout=120)
                tmp.replace(exe)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                tmp.unlink(missing_ok=True)
                err = (getattr(exc, "stderr", b"") or b"").decode(errors="replace").strip().splitlines()
                first = next((line for line in err if "error" in line), err[0] if err else str(exc))
                raise Skip(f"could not compile {SPLICE_REF_SRC.name}: {first}") from None
        return [str(exe), str(self.port)]

    def _argv_tinyproxy(self) -> list[str]:
        exe = self._debian("tinyproxy", "tinyproxy")
        conf = self.dir / "tinyproxy.conf"
        conf.write_text(
            f"User nobody\nGroup nogroup\nPort {self.port}\nListen 127.0.0.1\nTimeout 600\n"
            f'MaxClients 1024\nAllow 127.0.0.1\nLogLevel Critical\nLogFile "{self.dir}/tinyproxy.log"\n'
            "DisableViaHeader Yes\n"
        )
        return [exe, "-d", "-c", str(conf)]

    def _argv_squid(self) -> list[str]:
        exe = self._debian("squid", "squid")
        conf = self.dir / "squid.conf"
        conf.write_text(
            f"http_port 127.0.0.1:{self.port}\n"
            "http_access allow all\n"  # loopback only (http_port above)
            "cache deny all\ncache_mem 8 MB\n"
            "access_log none\ncache_store_log none\n"
            f"cache_log {self.dir}/cache.log\npid_filename {self.dir}/squid.pid\n"
            f"coredump_dir {self.dir}\nnetdb_filename none\n"
            "pinger_enable off\ndns_nameservers 127.0.0.1\n"  # targets are IP literals: no DNS ever
            "shutdown_lifetime 0 seconds\nmax_filedescriptors 4096\n"
            "cache_effective_user proxy\n"
        )
        return [exe, "-N", "-f", str(conf)]

    def _argv_proxypy(self) -> list[str]:
        exe = str(peer_venv() / "proxy")
        return [exe, "--hostname", "127.0.0.1", "--port", str(self.port), "--log-level", "ERROR", "--num-workers", "2"]

    def _argv_mitmproxy(self) -> list[str]:
        exe = str(peer_venv() / "mitmdump")
        # ignore_hosts=.* : every CONNECT is relayed raw (no interception).
        return [exe, "--listen-host", "127.0.0.1", "-p", str(self.port), "-q", "--set", f"confdir={self.dir}/conf", "--ignore-hosts", ".*"]

    def _argv_mitmproxy_intercept(self) -> list[str]:
        exe = str(peer_venv() / "mitmdump")
        assert self.upstream_ca, "mitmproxy_intercept needs upstream_ca"
        return [
            exe,
            "--listen-host",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-q",
            "--set",
            f"confdir={self.dir}/conf",
            "--set",
            f"ssl_verify_upstream_trusted_ca={self.upstream_ca}",
        ]

    # ------------------------------------------------------------------ lifecycle

    def _wait_listening(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Skip(f"{self.name} exited with {self.proc.returncode}: {self._log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                if self.name.startswith("mitmproxy") and not Path(self.ca_file).exists():
                    raise OSError("CA not written yet")
                return
            except OSError:
                time.sleep(0.1)
        raise Skip(f"{self.name} not listening after {timeout:g}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return (self.dir / "peer.log").read_text(errors="replace").strip()[-300:]
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the peer's whole process group and remove its temp dir. Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
