"""The built-in ``local`` compute driver: one supervisor per sandbox as a host process.

No container runtime. The supervisor (``python -m openshell.supervisor``) runs
as root in its own session; the sandbox sees the host filesystem through its
private mount namespace and Landlock (DESIGN.md §4). Per-sandbox files live in
``<gateway state>/sandboxes/<id>/`` (mode 0700):

- ``supervisor.json`` (0600): what the supervisor needs to reach the gateway,
  including the sandbox's secret — never visible inside the sandbox;
- ``supervisor.pid``, ``supervisor.log``; ``stopped`` while stopped on request
  (``stop``/``start``: the supervisor ends, every file stays); ``supervisor.exit``,
  how the last supervisor ended (its signal or exit code), written by whoever
  reaped it (``supervisor.exit_status``) for the ERROR reason;
- ``workdir.ext4`` and its loop mount ``workdir/`` (``/sandbox``), ``tmp/``
  (``/tmp``), ``files/hosts`` and ``files/tls/`` (``supervisor.mounts``).

The supervisor's SSH server listens on ``/run/openshell/ssh/<id>.sock`` (root
only): a unix socket path is limited to 107 bytes, which a state directory
under a deep ``$XDG_STATE_HOME`` would exceed.

Supervisors are forked from one *fork server* (``openshell.supervisor.forkserver``):
a process that has started Python and done its imports once, at low priority.
A create sends it the sandbox's config path over its stdin and gets back the
pid of a new supervisor, which shares the imported modules' memory with every
other supervisor and pays no interpreter start. Without a live fork server
(it crashed, or does not answer) the supervisor is started cold, and the next
create starts a new server.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from openshell.plugin import hookimpl
from openshell.plugin.kinds import ComputeDriver, SandboxStatus, SshEndpoint
from openshell.supervisor import exit_status
from openshell.supervisor.cleanup import cleanup_sandbox

log = logging.getLogger("openshell.drivers.local")

STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL for a supervisor
REAP_INTERVAL = 2.0  # seconds between checks for supervisors that exited
SSH_SOCKET_DIR = Path("/run/openshell/ssh")
STOPPED_MARKER = "stopped"  # in the sandbox's directory while it is stopped on request
COLLECT_WAIT = 2.0  # seconds a stopped supervisor's parent may take to collect it (see _terminate)
FORK_ANSWER_TIMEOUT = 10.0  # seconds for the fork server to answer a pid (incl. its own warm-up); then cold


#: gateway environment variables a supervisor inherits (nothing else: the gateway's
#: environment may hold credentials the sandbox must not see)
SUPERVISOR_ENV = ("PATH", "LANG", "LC_ALL", "OPENSHELL_DISABLE_PLUGINS", "OPENSHELL_STRICT_PLUGINS", "OPENSHELL_EXTRA_CA", "PYTHONPATH")


def _supervisor_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in SUPERVISOR_ENV}


class LocalDriver(ComputeDriver):
    """Runs each sandbox's supervisor as a host process (needs root).

    :param ctx: the gateway's ``DriverContext``. Constructing the driver starts
        the fork server (module docstring); ``close()`` stops it.
    """

    name = "local"
    summary = "Supervisor as a host process; namespaces + Landlock + seccomp, no container runtime"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self._lock = threading.Lock()  # guards _server and one exchange with it at a time
        self._server: subprocess.Popen | None = None
        self._closed = False
        # supervisors this driver started cold (its own children), by sandbox id, until
        # they exit and are reaped (also when their pid file went away with the sandbox's directory)
        self._children: dict[str, int] = {}
        # sandboxes whose supervisor is being started (no pid file yet): PROVISIONING, not gone
        self._launching: set[str] = set()
        from openshell.plugin.loader import supervisor_entry_points

        # The supervisor imports its plugins' modules directly (no entry-point scan per start).
        self._plugins = supervisor_entry_points()
        self._reaper = threading.Thread(target=self._reap_loop, name="local-driver-reaper", daemon=True)
        self._reaper.start()
        self._refill()

    def _reap_loop(self, interval: float = REAP_INTERVAL) -> None:
        """Collect supervisors that exited on their own (a sandbox whose state
        directory vanished, a crash), so none stays a zombie."""
        while not self._closed:
            time.sleep(interval)
            for sid, pid in list(self._children.items()):
                if not _alive(pid):
                    # How it ended goes to its sandbox's directory first (the ERROR reason).
                    _reap(pid, self.sandbox_dir(sid) / exit_status.EXIT_FILE)
                    self._children.pop(sid, None)

    # ------------------------------------------------------------------ fork server
    def _refill(self) -> None:
        """Start the fork server unless one runs. Never raises: without it the
        next create starts its supervisor cold."""
        with self._lock:
            self._ensure_server()

    def _ensure_server(self) -> None:
        if self._closed or (self._server is not None and self._server.poll() is None):
            return
        try:
            self._server = subprocess.Popen(
                [sys.executable, "-m", "openshell.supervisor", "--fork-server"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                env=_supervisor_env(),
            )
        except OSError as exc:
            self._server = None
            log.warning("event=fork_server_failed reason=%s", exc)

    def _drop_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.kill()
            server.wait()

    def _fork_supervisor(self, cfg_path: Path, log_path: Path) -> int | None:
        """Have the fork server start the supervisor of ``cfg_path``: its pid, or None
        when there is no live server or it did not answer (the caller starts it cold)."""
        with self._lock:
            server = self._server
            if server is None or server.poll() is not None or server.stdin is None or server.stdout is None:
                self._server = None
                return None
            # Written first, so a supervisor that dies before it opens the log still
            # leaves the sandbox's ERROR reason something to show.
            with open(log_path, "ab") as logf:
                logf.write(f"forked from the supervisor fork server (pid {server.pid})\n".encode())
            line = json.dumps({"config": str(cfg_path), "log": str(log_path)}).encode() + b"\n"
            try:
                # A server still warming up (a create right after the gateway started)
                # does so at its low priority: a sandbox waits on it now.
                os.setpriority(os.PRIO_PROCESS, server.pid, 0)
            except OSError:
                pass  # not root, or it is gone (the write below finds out)
            try:
                server.stdin.write(line)
                server.stdin.flush()
                ready, _, _ = select.select([server.stdout], [], [], FORK_ANSWER_TIMEOUT)
                answer = server.stdout.readline(32) if ready else b""
            except OSError as exc:  # it died between the poll and the write
                log.warning("event=fork_server_failed reason=%s", exc)
                self._drop_server()
                return None
            if not answer.endswith(b"\n") or not answer.strip().isdigit() or int(answer) <= 0:
                log.warning("event=fork_server_failed reason=no pid within %gs (answer %r)", FORK_ANSWER_TIMEOUT, answer[:32])
                self._drop_server()
                return None
            return int(answer)

    def close(self) -> None:
        """Stop the fork server (called by the gateway on shutdown); the supervisors
        it forked keep running. Idempotent."""
        with self._lock:
            self._closed = True
            server, self._server = self._server, None
        if server is not None and server.poll() is None:
            server.kill()
            server.wait(timeout=5)

    # ------------------------------------------------------------------ paths
    def sandbox_dir(self, sandbox_id: str) -> Path:
        """Directory holding every file of one sandbox."""
        return Path(self.ctx.state_dir) / "sandboxes" / sandbox_id

    def _pid(self, sandbox_id: str) -> int | None:
        try:
            return int((self.sandbox_dir(sandbox_id) / "supervisor.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------------ API
    def create(self, sandbox: Mapping[str, Any]) -> None:
        """Write the supervisor's config and start it detached.

        :param sandbox: record with at least ``id``, ``name``, ``secret`` (str or
            bytes) and ``netns_index`` (1..16383).
        :raises OSError: when the supervisor cannot be started.
        """
        sid = str(sandbox["id"])
        self._launching.add(sid)  # from the first file on: status says PROVISIONING until the pid file exists
        try:
            self._write_config(sandbox)
            self._launch(sid)
        finally:
            self._launching.discard(sid)

    def _write_config(self, sandbox: Mapping[str, Any]) -> None:
        """Write ``supervisor.json`` (0600) for ``sandbox`` into its directory (made 0700)."""
        sid = str(sandbox["id"])
        d = self.sandbox_dir(sid)
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        os.chmod(d.parent, 0o700)
        secret = sandbox["secret"]
        if isinstance(secret, bytes):
            secret = secret.hex()
        config = {
            "sandbox_id": sid,
            "name": sandbox.get("name", ""),
            "gateway_endpoint": self.ctx.gateway_endpoint,
            "ca_cert": self.ctx.ca_cert,
            "client_cert": self.ctx.client_cert,
            "client_key": self.ctx.client_key,
            "secret": secret,
            "netns_index": int(sandbox["netns_index"]),
            "state_dir": str(d),
            "ssh_socket": str(self._ssh_socket(sid)),
            # {"limits": {...}} (openshell.resources); the supervisor enforces them
            "resources": dict((sandbox.get("spec") or {}).get("resources") or {}),
            "plugins": self._plugins,
        }
        SSH_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
        os.chmod(SSH_SOCKET_DIR, 0o700)
        cfg_path = d / "supervisor.json"
        fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f)

    def _launch(self, sid: str) -> None:
        """Start the supervisor of sandbox ``sid`` from its ``supervisor.json`` (forked
        from the fork server when it runs, else cold)."""
        self._launching.add(sid)
        try:
            self._start_supervisor(sid)
        finally:
            self._launching.discard(sid)
        self._refill()

    def _start_supervisor(self, sid: str) -> None:
        d = self.sandbox_dir(sid)
        cfg_path = d / "supervisor.json"
        pid = self._fork_supervisor(cfg_path, d / "supervisor.log")
        warm = pid is not None
        if pid is None:
            logf = open(d / "supervisor.log", "ab", buffering=0)
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "openshell.supervisor", "--config", str(cfg_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=logf,
                    start_new_session=True,
                    close_fds=True,
                    env=_supervisor_env(),
                )
            finally:
                logf.close()
            pid = proc.pid
        (d / "supervisor.pid").write_text(str(pid))
        if not warm:
            # Ours to collect. A forked one is the fork server's child: it collects it
            # and records how it ended; watching it here too cost the reaper a /proc
            # read per sandbox every REAP_INTERVAL (9 ms of CPU a second with 500).
            self._children[sid] = pid
        log.info("event=supervisor_started sandbox=%s pid=%d forked=%s", sid, pid, "yes" if warm else "no")
        self.report_event(sid, "SupervisorStarted", f"supervisor pid {pid} started ({'forked from the fork server' if warm else 'cold start'})", pid=str(pid))

    def status(self, sandbox_id: str) -> SandboxStatus:
        """``ERROR`` with a reason when the supervisor is gone; ``PROVISIONING`` (no
        opinion: the supervisor reports readiness itself) while it runs."""
        if sandbox_id in self._launching:
            return SandboxStatus("PROVISIONING")  # its pid file is written once the supervisor runs
        pid = self._pid(sandbox_id)
        stopped = (self.sandbox_dir(sandbox_id) / STOPPED_MARKER).exists()
        if stopped and (pid is None or not _alive(pid)):
            return SandboxStatus("STOPPED", "stopped on request; 'openshell sandbox start' runs it again")
        if pid is None:
            return SandboxStatus("ERROR", "supervisor was never started or its pid file is gone")
        if not _alive(pid):
            return SandboxStatus("ERROR", self._exit_reason(sandbox_id, pid))
        return SandboxStatus("PROVISIONING")

    def _exit_reason(self, sandbox_id: str, pid: int) -> str:
        """``the supervisor (pid N) was killed by signal 9 (SIGKILL)`` / ``exited with
        code 1``, then its last log line as context. Without a record of how it
        ended (its parent, a fork server of an earlier gateway, is gone): ``ended (how is not known ...)``."""
        d = self.sandbox_dir(sandbox_id)
        if pid in list(self._children.values()):
            # Started cold by this gateway: ours to collect, recording how it ended.
            _reap(pid, d / exit_status.EXIT_FILE)
        # No record: its parent (a fork server of an earlier gateway) is gone, and pid 1 took it.
        how = exit_status.how_it_ended(d, pid) or "ended (how is not known: its exit status was collected by another process)"
        tail = _log_tail(d / "supervisor.log")
        return f"the supervisor (pid {pid}) {how}" + (f"; its last log line: {tail}" if tail else "")

    def delete(self, sandbox_id: str, keep_workdir: bool = False) -> None:
        """Stop the supervisor (SIGTERM, then SIGKILL after ``STOP_GRACE`` s) and
        remove its processes, namespaces and files. Safe after a crash and when
        called twice."""
        self._terminate(sandbox_id)
        # A crashed supervisor cleans nothing: do what its shutdown would have.
        cleanup_sandbox(sandbox_id, self.sandbox_dir(sandbox_id), keep_workdir=keep_workdir)
        self._ssh_socket(sandbox_id).unlink(missing_ok=True)

    def stop(self, sandbox_id: str) -> None:
        """Stop the supervisor like :meth:`delete` does, but keep every file of the
        sandbox (workdir, config, log); its processes, namespaces, cgroup and /tmp
        tmpfs go. Idempotent; an id without files is a no-op."""
        d = self.sandbox_dir(sandbox_id)
        if not d.is_dir():
            return
        # First: from here on a supervisor that is gone is stopped, not crashed.
        (d / STOPPED_MARKER).write_text(f"{time.time():.3f}\n")
        self._terminate(sandbox_id)
        # After a clean shutdown this finds nothing left; after a crash or a
        # SIGKILL it does what the supervisor's shutdown would have.
        cleanup_sandbox(sandbox_id, d, keep_files=True)
        (d / "supervisor.pid").unlink(missing_ok=True)
        self._ssh_socket(sandbox_id).unlink(missing_ok=True)
        log.info("event=supervisor_stopped sandbox=%s", sandbox_id)
        self.report_event(sandbox_id, "SupervisorStopped", "supervisor stopped; the sandbox's files are kept")

    def start(self, sandbox: Mapping[str, Any]) -> None:
        """Start a supervisor again for a sandbox :meth:`stop` stopped (same files;
        namespaces, cgroup and /tmp are made anew). A running one is left alone.

        :raises FileNotFoundError: the sandbox has no files here (deleted, or never created).
        :raises OSError: when the supervisor cannot be started.
        """
        sid = str(sandbox["id"])
        d = self.sandbox_dir(sid)
        if not (d / "supervisor.json").is_file():
            raise FileNotFoundError(f"sandbox {sid} has no files under {d}; it cannot be started, create it anew")
        pid = self._pid(sid)
        if pid is not None and _alive(pid):
            return
        self._launching.add(sid)
        try:
            self._write_config(sandbox)
            (d / STOPPED_MARKER).unlink(missing_ok=True)
            self._launch(sid)
        finally:
            self._launching.discard(sid)

    def _terminate(self, sandbox_id: str) -> None:
        """SIGTERM the supervisor's process group, SIGKILL after ``STOP_GRACE`` s; reap it."""
        pid = self._pid(sandbox_id)
        if pid is not None and _alive(pid):
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                _signal_group(pid, signal.SIGKILL)
        for known in {p for p in (pid, self._children.pop(sandbox_id, None)) if p is not None}:
            _reap(known)
        if pid is not None:
            # A forked supervisor is the fork server's to collect, which first writes
            # supervisor.exit into the sandbox's directory: done before the caller
            # removes that directory (a file made during the removal would keep it).
            _wait_collected(pid)

    def _ssh_socket(self, sandbox_id: str) -> Path:
        return SSH_SOCKET_DIR / f"{sandbox_id}.sock"

    def ssh_endpoint(self, sandbox_id: str) -> SshEndpoint:
        """The supervisor's SSH unix socket."""
        return SshEndpoint(unix_path=str(self._ssh_socket(sandbox_id)))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def _reap(pid: int, exit_file: Path | None = None) -> None:
    """Collect ``pid``'s exit status if it is our exited child, so a supervisor
    that stopped on its own does not stay a zombie (``kill -0`` succeeds on
    zombies, which misleads anything watching ``supervisor.pid``). With
    ``exit_file``, how it ended is written there first. Not our child (started by
    an earlier gateway, or by the fork server) or already collected: nothing."""
    exit_status.reap(pid, exit_file)


def _wait_collected(pid: int, timeout: float = COLLECT_WAIT) -> None:
    """Wait (at most ``timeout`` s) until the exited ``pid`` has been collected by its parent."""
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.005)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _log_tail(path: Path, limit: int = 300) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][-limit:] if lines else ""


def remove_tree(path: Path) -> None:
    """Remove ``path`` recursively, ignoring a missing one."""
    shutil.rmtree(path, ignore_errors=True)


@hookimpl
def register_compute_drivers(register) -> None:
    register(LocalDriver)
