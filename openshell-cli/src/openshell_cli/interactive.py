"""Interactive terminal sessions: ``sandbox connect`` (SSH) and ``sandbox exec --tty`` (gRPC).

Both put our terminal in raw mode (so Ctrl-C, Ctrl-D and arrow keys travel to
the remote PTY as bytes, where the remote line discipline turns Ctrl-C into
SIGINT for the remote foreground process), follow our window size (SIGWINCH →
a window-change to the remote PTY), restore the terminal on every exit path,
and return the remote command's exit status.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import shutil
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from typing import Optional

CHUNK = 64 * 1024


def terminal_size() -> tuple[int, int]:
    """``(cols, rows)`` of our terminal (stdin, then stdout), 80x24 when there is none."""
    for fd in (0, 1):
        try:
            size = os.get_terminal_size(fd)
            return size.columns, size.lines
        except OSError:
            continue
    size = shutil.get_terminal_size((80, 24))
    return size.columns, size.lines


@contextlib.contextmanager
def raw_terminal() -> Iterator[None]:
    """Put stdin in raw mode when it is a terminal; always restore it."""
    fd = sys.stdin.fileno() if sys.stdin is not None else -1
    if fd < 0 or not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def on_resize(callback) -> Iterator[None]:
    """Call ``callback(cols, rows)`` on SIGWINCH while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGWINCH, lambda *_: callback(*terminal_size()))
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def ssh_pty_session(transport, command: Optional[str] = None, env: Optional[dict[str, str]] = None) -> int:
    """Run a login shell (or ``command``) under a remote PTY on ``transport``; return its exit status.

    :param transport: an authenticated ``paramiko.Transport`` to the sandbox.
    :param command: shell command line; None starts the interactive login shell.
    :returns: the remote exit status (255 when the session died without one).
    """
    cols, rows = terminal_size()
    chan = transport.open_session()
    if env:
        chan.update_environment(env)
    chan.get_pty(term=os.environ.get("TERM", "xterm"), width=cols, height=rows)
    if command is None:
        chan.invoke_shell()
    else:
        chan.exec_command(command)
    in_fd, out_fd = sys.stdin.fileno(), sys.stdout.fileno()
    stdin_open = True
    with raw_terminal(), on_resize(lambda c, r: chan.resize_pty(width=c, height=r)):
        while True:
            try:
                r, _, _ = select.select([chan] + ([in_fd] if stdin_open else []), [], [], 0.5)
            except InterruptedError:  # SIGWINCH
                continue
            if chan in r:
                data = chan.recv(CHUNK)
                if not data:
                    break
                _write_all(out_fd, data)
            if in_fd in r:
                data = os.read(in_fd, CHUNK)
                if data:
                    chan.sendall(data)
                else:
                    stdin_open = False
                    chan.shutdown_write()
            if chan.exit_status_ready() and not chan.recv_ready():
                break
    code = chan.recv_exit_status() if chan.exit_status_ready() else 255
    chan.close()
    return 255 if code < 0 else code


class StdinPump:
    """Our stdin as an iterator of chunks, read by a daemon thread.

    The iterator ends at EOF of stdin or when :meth:`stop` is called; other
    items (``(cols, rows)`` resizes) can be queued with :meth:`put`. A stdin that
    never closes therefore never keeps an exec alive after its command ended.
    """

    def __init__(self, fd: int | None = None) -> None:
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.queue: queue.Queue = queue.Queue(maxsize=64)
        self.done = threading.Event()
        threading.Thread(target=self._read, daemon=True, name="stdin").start()

    def _read(self) -> None:
        while not self.done.is_set():
            try:
                data = os.read(self.fd, CHUNK)
            except OSError:
                data = b""
            self.queue.put(data)
            if not data:
                return

    def put(self, item) -> None:
        """Queue an extra item (a ``(cols, rows)`` resize); dropped when the queue is full."""
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(item)

    def stop(self) -> None:
        self.done.set()

    def __iter__(self):
        while not self.done.is_set():
            try:
                item = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if item == b"":
                return
            yield item


def grpc_tty_exec(client, name: str, argv: list[str], *, env: dict, workdir: Optional[str], timeout: Optional[float]) -> int:
    """``sandbox exec --tty``: ``ExecSandboxInteractive`` with a PTY; return the exit status.

    Our stdin is read by a daemon thread into a queue (stdin that never closes
    must not keep us alive once the command ended); resizes join the same queue.
    """
    pump = StdinPump()
    cols, rows = terminal_size()
    code = 255
    out_fd, err_fd = sys.stdout.fileno(), sys.stderr.fileno()
    try:
        with raw_terminal(), on_resize(lambda c, r: pump.put((c, r))):
            for ev in client.exec_interactive(name, argv, iter(pump), tty=True, cols=cols, rows=rows, env=env, workdir=workdir, timeout=timeout):
                if ev.kind == "stdout":
                    _write_all(out_fd, ev.data)
                elif ev.kind == "stderr":
                    _write_all(err_fd, ev.data)
                elif ev.kind == "exit":
                    code = ev.exit_code if ev.exit_code is not None else 255
    finally:
        pump.stop()
    return code
