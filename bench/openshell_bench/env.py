"""What the figures run against: a private gateway, test hosts, sandboxes.

Everything stays on this machine (DESIGN.md §7): upstreams are test hosts
(``openshell.testhost.TestHost``) named ``bn…`` in ``10.199.50.0/24``–
``10.199.59.0/24``; the gateway listens on a free loopback port with its
client files and state under a temporary directory, so the default gateway
(port 8080) is never touched. Every helper cleans up in ``close()`` /
``__exit__``, also after a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
OPENSHELL = str(Path(sys.executable).with_name("openshell"))
SANDBOX_PYTHON = "/usr/bin/python3"  # the same interpreter measures every subject
LOADCLIENT = (Path(__file__).with_name("loadclient.py")).read_text()
HOST_NAME = "bench.example.test"
UPSTREAM_PORT = 8080


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (racy by nature; good enough for one run)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_root() -> None:
    """:raises Skip: not root (namespaces, the gateway's supervisors and /proc need it)."""
    from openshell_bench.results import Skip

    if os.geteuid() != 0:
        raise Skip("needs root (network namespaces, supervisors)")


@contextmanager
def test_host(slot: int, *, tls: tuple[str, str] | None = None) -> Iterator:
    """A test host ``bn<slot>-<pid>`` at ``10.199.5<slot>.2`` with the bench upstream
    (``upstream.Upstream``) on port 8080.

    :param slot: 0-9, one per figure so figures never share a /24.
    :param tls: ``(cert_path, key_path)`` to serve HTTPS instead.
    """
    from openshell.testhost import AddressInUse, TestHost

    from openshell_bench.upstream import Upstream

    host = TestHost(f"bn{slot}-{os.getpid() % 10000}", f"10.199.{50 + slot}.2")
    server = None
    try:
        try:
            host.start()
        except AddressInUse as exc:
            raise RuntimeError(f"another benchmark run on this machine is using {host.ip} ({exc}); run one benchmark at a time") from None
        server = Upstream(host, UPSTREAM_PORT, tls)
        yield host
    finally:
        if server is not None:
            server.close()
        host.close()


def network_policy(ip: str, *, rest: bool = False) -> str:
    """A policy letting the sandbox's ``python3`` reach ``HOST_NAME:8080`` at ``ip``."""
    l7 = ", protocol: rest, access: full" if rest else ""
    return (
        "version: 1\n"
        "network_policies:\n"
        "  bench:\n"
        f"    endpoints: [{{host: {HOST_NAME}, port: {UPSTREAM_PORT}, allowed_ips: [{ip}/32]{l7}}},\n"
        f"                {{host: {ip}, port: {UPSTREAM_PORT}}}]\n"
        f"    binaries: [{{path: {SANDBOX_PYTHON}}}]\n"
    )


@contextmanager
def environ_set(values: dict[str, str]) -> Iterator[None]:
    """This process's environment with ``values`` set, restored (set or unset) afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class BenchGateway:
    """A gateway of our own on a free loopback port, state under a temp dir.

    :param extra_env: environment for the gateway process (and so its supervisors),
        e.g. ``OPENSHELL_EXTRA_CA``.
    :param driver: compute driver (``local``; ``docker`` for the lifecycle figure's
        docker rows, named ``bench<pid>do``).
    :raises RuntimeError: the gateway did not start (the CLI's message).
    """

    def __init__(self, extra_env: dict[str, str] | None = None, driver: str = "local") -> None:
        self.base = Path(tempfile.mkdtemp(prefix="osbench-gw-"))
        self.driver = driver
        self.name = f"bench{os.getpid()}" + ("" if driver == "local" else driver[:2])
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update(XDG_CONFIG_HOME=str(self.base / "config"), XDG_STATE_HOME=str(self.base / "state"), OPENSHELL_GATEWAY=self.name)
        self.env.pop("OPENSHELL_STATE_DIR", None)
        self.env.update(extra_env or {})
        self.client = None
        try:
            self._start()
        except BaseException:  # failed or interrupted half-way: stop whatever did start
            self.close()
            raise

    def _start(self) -> None:
        self.cli("gateway", "start", "--name", self.name, "--port", str(self.port), "--driver", self.driver, check=True, timeout=90)
        from openshell.client.config import load_gateway_config
        from openshell.client.sdk import OpenShellClient

        with environ_set({"XDG_CONFIG_HOME": self.env["XDG_CONFIG_HOME"]}):
            cfg = load_gateway_config(self.name)
        self.client = OpenShellClient(cfg.endpoint, cfg.ca_path, cfg.cert_path, cfg.key_path, gateway_name=self.name, timeout=60)

    def cli(self, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``openshell ARGS`` against this gateway."""
        proc = subprocess.run([OPENSHELL, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"openshell {' '.join(args)} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-400:]}")
        return proc

    @property
    def pid(self) -> int | None:
        """The gateway process id (from its pid file)."""
        for path in (self.base / "state").rglob("gateway.pid"):
            try:
                return int(path.read_text().strip())
            except (OSError, ValueError):
                return None
        return None

    def create(self, name: str, policy: str = "", hosts: Sequence[str] = (), timeout: float = 120) -> float:
        """Create sandbox ``name`` and wait for READY; return seconds from the call to READY."""
        t0 = time.perf_counter()
        self.client.create_sandbox(name=name, policy_yaml=policy, extra_hosts=list(hosts))
        self.client.wait_ready(name, timeout=timeout)  # follows WatchSandbox: READY the moment the gateway has it
        return time.perf_counter() - t0

    def delete(self, name: str) -> float:
        """Delete sandbox ``name`` (returns once the gateway says COMPLETED); return seconds."""
        t0 = time.perf_counter()
        self.client.delete_sandbox(name, allow_missing=True)
        return time.perf_counter() - t0

    def run(self, name: str, argv: Sequence[str], timeout: float = 600) -> tuple[int, str, str]:
        """Run ``argv`` inside sandbox ``name``; ``(exit code, stdout, stderr)``."""
        code, out, err = self.client.run(name, list(argv), timeout=timeout)
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    def close(self) -> None:
        """Delete every sandbox, stop the gateway, remove its state. Idempotent."""
        if self.base is None:
            return
        try:
            self.cli("sandbox", "delete", "--all", timeout=600)
        finally:
            if self.client is not None:
                self.client.close()
            self.cli("gateway", "stop", "--name", self.name, timeout=120)
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> BenchGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def pss_kib(pid: int) -> int:
    """Proportional set size of ``pid`` in KiB (shared pages split between sharers); 0 if gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


SECCOMP_LISTENER = "anon_inode:seccomp notify"  # what a seccomp user-notification fd links to
CLIENT_MARKER = b"The measuring client"  # in the load client's argv (``-c`` text)


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2 :].split()[1])


def _listeners(pid: int) -> int:
    """How many seccomp user-notification listeners process ``pid`` holds."""
    n = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}") == SECCOMP_LISTENER
        except OSError:
            continue
    return n


def _seccomp_mode(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return int(line.split()[1])
    return 0


class AttributionProbe:
    """While a sandboxed load client runs: is connect attribution on for it?

    A background thread looks (every 50 ms, until found or ``close``) for a
    process running the load client (``CLIENT_MARKER`` in its argv) in ``mode``,
    reads its seccomp mode (2: filtered) and walks its ``ppid`` links up to the
    first process holding seccomp user-notification listeners (the sandbox's
    supervisor, whose ``ConnectAttributor`` answers every ``connect`` of the
    client before the SYN leaves). ``result``: ``{"client", "seccomp",
    "supervisor", "listeners"}`` or None if no such client or supervisor was seen.
    """

    def __init__(self, mode: str) -> None:
        import threading

        self.mode = mode.encode()
        self.result: dict | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="attribution-probe", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            found = self._look()
            if found is not None:
                self.result = found
                return

    def _look(self) -> dict | None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                if len(argv) < 4 or CLIENT_MARKER not in argv[2] or argv[3] != self.mode or argv[4:5] != [b"env"]:
                    continue
                seccomp = _seccomp_mode(pid)
                current, hops = _ppid(pid), 0
                while current > 1 and hops < 16:
                    count = _listeners(current)
                    if count:
                        return {"client": pid, "seccomp": seccomp, "supervisor": current, "listeners": count}
                    current, hops = _ppid(current), hops + 1
            except (OSError, ValueError):
                continue
        return None

    def close(self) -> dict | None:
        """Stop looking; the result."""
        self._stop.set()
        self._thread.join(timeout=5)
        return self.result

    def __enter__(self) -> AttributionProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sandboxed_client_argv(mode: str, *args: object) -> list[str]:
    """argv running the load client inside a sandbox through its proxy (``$HTTPS_PROXY``)."""
    return [SANDBOX_PYTHON, "-c", LOADCLIENT, mode, "env", *map(str, args)]


def host_client(mode: str, proxy: str, *args: object, timeout: float = 600) -> dict:
    """Run the load client in the root namespace (direct with ``proxy="-"``, or a peer).

    :raises RuntimeError: the client failed (its stderr tail in the message).
    """
    import json

    proc = subprocess.run(
        [SANDBOX_PYTHON, "-c", LOADCLIENT, mode, proxy, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load client {mode} via {proxy} failed: {proc.stderr.strip()[-400:]}")
    return json.loads(proc.stdout)


def sandbox_client(gw: BenchGateway, sandbox: str, mode: str, *args: object, timeout: float = 600) -> dict:
    """Run the load client inside ``sandbox``; its parsed JSON. :raises RuntimeError:."""
    import json

    code, out, err = gw.run(sandbox, sandboxed_client_argv(mode, *args), timeout=timeout)
    if code != 0:
        raise RuntimeError(f"sandboxed load client {mode} exited {code}: {err.strip()[-400:]}")
    return json.loads(out)


@contextmanager
def tempdir(prefix: str) -> Iterator[Path]:
    """A temporary directory removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
