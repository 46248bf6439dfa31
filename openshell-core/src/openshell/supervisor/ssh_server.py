"""The supervisor's embedded SSH server (paramiko).

paramiko (~60 ms of import) is loaded by the first connection that passed the
NSSH1 preface, not at supervisor start: :meth:`SshServer.start` binds the unix
socket with a plain socket, so the sandbox is reachable as soon as it is READY
(the paramiko callbacks live in ``ssh_channels``).

It listens on a unix socket only root can open (the gateway reaches it through
the compute driver), requires the NSSH1 preface before any SSH byte, and runs
every session's command through the child launcher, so an SSH session gets the
same isolation as the entrypoint. The preface authenticates the connection, so
SSH user authentication is ``none``.

Channels:

- ``session`` with ``exec``/``shell`` (optionally a PTY that follows
  ``window-change``) and the ``sftp`` subsystem. SFTP runs OpenSSH's
  ``sftp-server`` *inside the sandbox* through the same launcher, so file
  operations happen as the sandbox user under Landlock and seccomp, never as
  the root supervisor.
- ``direct-tcpip`` (port forwarding) to loopback targets only (``127.0.0.1``,
  ``localhost``, ``::1``), dialled inside the sandbox's network namespace by the
  ``dial`` callback; any other target is refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shlex
import signal
import socket
import subprocess
import threading
from typing import TYPE_CHECKING, Callable, Optional

from openshell.nssh import ERR, MAX_LINE, MAX_PACKET, OK, WINDOW_SIZE, PrefaceError, PrefaceVerifier
from openshell.supervisor.ssh_session import ChannelState, SessionRequest, set_winsize

if TYPE_CHECKING:
    import paramiko

log = logging.getLogger("openshell.supervisor.ssh")
# paramiko logs every peer that hangs up after its exec ended (what the gateway
# does) as an ERROR "Socket exception"; session failures are logged by us.
logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)

PREFACE_TIMEOUT = 10.0  # seconds a peer may take to send the preface
CHUNK = 64 * 1024
#: OpenSSH's SFTP server (Debian package openssh-sftp-server), run inside the sandbox
#: direct-tcpip targets a forward may reach (inside the sandbox's network namespace)
KEEPALIVE = 30  # seconds between SSH keepalives to the client


#: ``launch(request, stdin, stdout, stderr) -> Popen``: the supervisor's child launcher.
Launcher = Callable[[SessionRequest, object, object, object], subprocess.Popen]
#: ``dial(family) -> socket``: an unconnected TCP socket in the sandbox's network namespace.
Dialer = Callable[[int], socket.socket]


def tcp_address(url: str) -> tuple[str, int]:
    """``(host, port)`` of ``tcp://HOST:PORT``; an empty host is ``$OPENSHELL_POD_IP``
    (the pod's own address, from the downward API), so the server listens on the pod
    network only and not on the sandbox link's side of the pod.

    :raises ValueError: not ``tcp://HOST:PORT`` with a port 1..65535, or an empty host
        without ``$OPENSHELL_POD_IP``.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "tcp" or not port or parts.path or parts.query:
        raise ValueError(f"SSH listen address {url!r} is not tcp://HOST:PORT")
    host = parts.hostname or os.environ.get("OPENSHELL_POD_IP", "")
    if not host:
        raise ValueError(f"SSH listen address {url!r} has no host and OPENSHELL_POD_IP is not set")
    return host, port


class SshServer:
    """SSH server on a unix socket (or a TCP port in a pod), one thread per connection.

    :param path: unix socket path (created 0600; its directory should be root-only),
        or ``tcp://HOST:PORT`` (:func:`tcp_address`).
    :param secret: the sandbox's NSSH1 secret.
    :param launch: the child launcher callback (see ``Launcher``).
    :param shell: the login shell for interactive sessions.
    :param dial: creates sockets in the sandbox's network namespace for
        ``direct-tcpip`` channels; None refuses every port forward.
    """

    def __init__(self, path: str, secret: bytes, launch: Launcher, *, shell: str = "/bin/bash", dial: Optional[Dialer] = None) -> None:
        self.path = path
        self._tcp = path.startswith("tcp://")
        self.dial = dial
        self.verifier = PrefaceVerifier(secret)
        self.launch = launch
        self.shell = shell if os.path.exists(shell) else "/bin/sh"
        self._host_key: Optional[paramiko.ECDSAKey] = None  # made with the first connection
        self._key_lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._closed = threading.Event()
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Bind the socket and serve in a background thread.

        :raises OSError: the socket cannot be bound.
        :raises ValueError: a ``tcp://`` address that does not parse (:func:`tcp_address`).
        """
        self._sock = self._bind()
        threading.Thread(target=self._accept_loop, daemon=True, name="ssh-accept").start()

    def _bind(self) -> socket.socket:
        if self._tcp:
            # A pod's supervisor (kubernetes driver): the gateway dials the pod's IP. The
            # NSSH1 preface (HMAC of the sandbox's secret) is what admits a peer.
            return socket.create_server(tcp_address(self.path), backlog=64)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        sock.listen(64)
        return sock

    def close(self) -> None:
        """Stop accepting, remove the socket file, kill running session processes."""
        self._closed.set()
        if self._sock:
            self._sock.close()
            if not self._tcp:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
        with self._lock:
            procs = list(self._procs)
        for p in procs:
            _kill_group(p)

    def host_key(self) -> paramiko.ECDSAKey:
        """The server's ECDSA host key (``paramiko.ECDSAKey``), made on first use and
        kept for the supervisor's life (every connection presents the same key)."""
        with self._key_lock:
            if self._host_key is None:
                import paramiko  # deferred: ~60 ms kept off the supervisor's start (module docstring)

                self._host_key = paramiko.ECDSAKey.generate()
            return self._host_key

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True, name="ssh-conn").start()

    def _read_preface(self, conn: socket.socket) -> bytes:
        conn.settimeout(PREFACE_TIMEOUT)
        buf = b""
        # Byte at a time: nothing after the newline may be consumed (it is SSH).
        while not buf.endswith(b"\n"):
            if len(buf) >= MAX_LINE:
                raise PrefaceError("preface too long")
            b = conn.recv(1)
            if not b:
                raise PrefaceError("connection closed before preface")
            buf += b
        conn.settimeout(None)
        return buf

    def _handle(self, conn: socket.socket) -> None:
        try:
            line = self._read_preface(conn)
            self.verifier.verify(line)
        except (PrefaceError, OSError) as exc:
            log.warning("event=ssh_preface_rejected reason=%s", exc)
            try:
                conn.sendall(ERR)
            except OSError:
                pass
            conn.close()
            return
        conn.sendall(OK)
        # Deferred: paramiko (~60 ms) loads with the first connection, not at start.
        import paramiko

        from openshell.supervisor.ssh_channels import _Session, _signal_replies

        transport = paramiko.Transport(conn, default_window_size=WINDOW_SIZE, default_max_packet_size=MAX_PACKET)
        transport.set_keepalive(KEEPALIVE)  # keeps idle sessions alive through the gateway's idle timeout
        transport.add_server_key(self.host_key())
        iface = _Session(self)
        _signal_replies(transport, iface)
        try:
            transport.start_server(server=iface)
            # Channels are served from check_channel_*; keep accepting new ones.
            # Sessions start from check_channel_*_request. Accepted channels
            # must stay referenced: paramiko closes a Channel when it is collected.
            open_channels: list[paramiko.Channel] = []
            while transport.is_active() and not self._closed.is_set():
                chan = transport.accept(timeout=1.0)
                open_channels = [c for c in open_channels if not c.closed]
                if chan is not None:
                    open_channels.append(chan)
                    fwd = iface.forwards.pop(chan.get_id(), None)
                    if fwd is not None:
                        threading.Thread(target=bridge, args=(chan, fwd), daemon=True, name="ssh-forward").start()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            log.info("event=ssh_connection_closed reason=%s", exc)
        finally:
            for sock in iface.forwards.values():
                with contextlib.suppress(OSError):
                    sock.close()
            transport.close()

    def _run_session(self, iface: ChannelState, channel: paramiko.Channel, req: SessionRequest) -> None:
        import paramiko  # deferred (module docstring); loaded by the time a session runs

        code = 255
        proc: Optional[subprocess.Popen] = None
        # Without want_reply there is no reply to wait for; 2 s bounds that case.
        iface.replied.wait(timeout=2.0)
        try:
            if req.pty:
                code, proc = self._run_pty(iface, channel, req)
            else:
                code, proc = self._run_pipes(channel, req)
        except Exception as exc:  # noqa: BLE001 - reported to the client, then logged
            log.warning("event=ssh_session_failed reason=%s", exc)
            try:
                channel.sendall_stderr(f"openshell: {exc}\n".encode())
            except OSError:
                pass
        finally:
            if proc is not None:
                with self._lock:
                    self._procs.discard(proc)
            try:
                channel.send_exit_status(code)
                channel.shutdown_write()
                channel.close()
            except (OSError, EOFError, paramiko.SSHException):
                pass

    def _track(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(proc)

    def _run_pipes(self, channel: paramiko.Channel, req: SessionRequest):
        import paramiko  # deferred (module docstring); loaded by the time a session runs

        proc = self.launch(req, subprocess.PIPE, subprocess.PIPE, subprocess.PIPE)
        self._track(proc)
        assert proc.stdin and proc.stdout and proc.stderr
        stdin = proc.stdin

        def feed_stdin() -> None:
            try:
                while True:
                    data = channel.recv(CHUNK)
                    if not data:
                        break
                    stdin.write(data)
                    stdin.flush()
            except (OSError, ValueError, EOFError):
                pass
            finally:
                try:
                    stdin.close()
                except OSError:
                    pass

        def pump(src, send) -> None:
            fd = src.fileno()
            try:
                while True:
                    data = os.read(fd, CHUNK)
                    if not data:
                        break
                    send(data)
            except (OSError, EOFError, paramiko.SSHException):
                pass

        threading.Thread(target=feed_stdin, daemon=True).start()
        t_out = threading.Thread(target=pump, args=(proc.stdout, channel.sendall), daemon=True)
        t_err = threading.Thread(target=pump, args=(proc.stderr, channel.sendall_stderr), daemon=True)
        t_out.start()
        t_err.start()
        # The session ends when the command ends, even if stdin never closes.
        while proc.poll() is None:
            if channel.closed or not channel.get_transport().is_active():
                _kill_group(proc)
                break
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        code = proc.wait()
        t_out.join(timeout=5)
        t_err.join(timeout=5)
        return _exit_code(code), proc

    def _run_pty(self, iface: ChannelState, channel: paramiko.Channel, req: SessionRequest):
        assert req.pty is not None  # the caller runs a PTY session only when one was requested
        term, cols, rows = req.pty
        master, slave = os.openpty()
        set_winsize(master, cols, rows)
        iface.master_fd = master
        req.env.setdefault("TERM", term)
        try:
            proc = self.launch(req, slave, slave, slave)
        finally:
            os.close(slave)
        self._track(proc)

        def to_pty() -> None:
            try:
                while True:
                    data = channel.recv(CHUNK)
                    if not data:
                        break
                    os.write(master, data)
            except (OSError, EOFError):
                pass

        threading.Thread(target=to_pty, daemon=True).start()
        try:
            while True:
                if channel.closed:
                    _kill_group(proc)
                    break
                r, _, _ = select.select([master], [], [], 0.2)
                if master in r:
                    try:
                        data = os.read(master, CHUNK)
                    except OSError:  # EIO: the last holder of the slave exited
                        break
                    if not data:
                        break
                    channel.sendall(data)
                elif proc.poll() is not None:
                    # Drain what is left, then stop.
                    r, _, _ = select.select([master], [], [], 0.05)
                    if not r:
                        break
        finally:
            code = proc.wait()
            iface.master_fd = None
            os.close(master)
        return _exit_code(code), proc


def bridge(chan: paramiko.Channel, sock: socket.socket) -> None:
    """Relay bytes between an SSH channel and a TCP socket until both sides end.

    EOF on one side half-closes the other; at most :data:`CHUNK` bytes are in
    flight per direction (``sendall`` blocks on a full peer). Closes both.
    """
    import paramiko  # deferred (module docstring); callers have loaded it already

    chan_open = sock_open = True
    try:
        while chan_open or sock_open:
            waiting = ([chan] if chan_open else []) + ([sock] if sock_open else [])
            r, _, _ = select.select(waiting, [], [], 1.0)
            if chan.closed and not chan.recv_ready():
                break
            if chan in r:
                data = chan.recv(CHUNK)
                if data:
                    sock.sendall(data)
                else:
                    chan_open = False
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
            if sock in r:
                data = sock.recv(CHUNK)
                if data:
                    chan.sendall(data)
                else:
                    sock_open = False
                    with contextlib.suppress(OSError, EOFError):
                        chan.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        with contextlib.suppress(Exception):
            sock.close()
        with contextlib.suppress(Exception):
            chan.close()


def _exit_code(code: int) -> int:
    return 128 - code if code < 0 else code


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                return
        try:
            proc.wait(timeout=2)
            return
        except subprocess.TimeoutExpired:
            continue


def command_for(argv: list[str], workdir: str | None = None) -> str:
    """Build the exec command line the server runs with ``/bin/sh -c``.

    :param argv: the program and its arguments (quoted for the shell).
    :param workdir: directory to run in, or None for the session default.
    """
    cmd = "exec " + shlex.join(argv)
    if workdir:
        cmd = f"cd {shlex.quote(workdir)} && {cmd}"
    return cmd
