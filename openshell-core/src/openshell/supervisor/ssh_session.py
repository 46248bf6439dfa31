"""What the supervisor's SSH server and its paramiko callbacks share, without paramiko.

:mod:`openshell.supervisor.ssh_server` (imported at every supervisor start) and
:mod:`openshell.supervisor.ssh_channels` (imported with paramiko by the first
connection) both use these; neither imports the other at start-up.
"""

from __future__ import annotations

import fcntl
import struct
import termios
import threading
from dataclasses import dataclass, field
from typing import Optional

MAX_ENV = 256  # env requests per channel
MAX_ENV_BYTES = 64 * 1024
SFTP_SERVER_PATHS = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/lib/sftp-server")
LOOPBACK_TARGETS = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "::1"}
DIAL_TIMEOUT = 5.0  # seconds to connect a direct-tcpip target


@dataclass
class SessionRequest:
    """What an SSH channel asked to run.

    :ivar argv: the argv to launch (``["/bin/sh", "-c", command]`` for exec,
        the login shell for ``shell``).
    :ivar env: variables the client sent with ``env`` requests.
    :ivar pty: ``(term, cols, rows)`` when a PTY was requested, else None.
    """

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    pty: Optional[tuple[str, int, int]] = None


def set_winsize(fd: int, cols: int, rows: int) -> None:
    """Set the PTY ``fd``'s window size (at least 1x1)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", max(rows, 1), max(cols, 1), 0, 0))


@dataclass
class ChannelState:
    """What one SSH channel asked for so far (env, PTY) and whether it started."""

    env: dict[str, str] = field(default_factory=dict)
    env_bytes: int = 0
    pty: Optional[tuple[str, int, int]] = None
    master_fd: Optional[int] = None
    started: bool = False
    # Set once paramiko has sent the reply to the exec/shell request: output
    # sent before it makes clients drop the channel ("Channel closed").
    replied: threading.Event = field(default_factory=threading.Event)
