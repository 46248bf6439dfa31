"""paramiko's side of the supervisor's SSH server: the per-connection callbacks.

Imported by :class:`openshell.supervisor.ssh_server.SshServer` when the first
connection has passed the NSSH1 preface, so a supervisor that is never reached
over SSH never imports paramiko (create-to-READY). The rules the
callbacks implement are described in ``ssh_server``'s module docstring.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any, Optional

import paramiko

from openshell.supervisor.ssh_session import (
    DIAL_TIMEOUT,
    LOOPBACK_TARGETS,
    MAX_ENV,
    MAX_ENV_BYTES,
    SFTP_SERVER_PATHS,
    ChannelState,
    SessionRequest,
    set_winsize,
)

if TYPE_CHECKING:
    from openshell.supervisor.ssh_server import SshServer

log = logging.getLogger("openshell.supervisor.ssh")


class _Session(paramiko.ServerInterface):
    """paramiko callbacks for one SSH connection; per-channel state by channel id."""

    def __init__(self, server: "SshServer") -> None:
        self.server = server
        self.channels: dict[int, ChannelState] = {}
        #: direct-tcpip sockets dialled at open time, by channel id, until the channel is accepted
        self.forwards: dict[int, socket.socket] = {}

    def _state(self, channel) -> ChannelState:
        return self.channels.setdefault(channel.get_id(), ChannelState())

    # --- authentication: the NSSH1 preface already authenticated the peer
    def get_allowed_auths(self, username: str) -> str:
        return "none"

    def check_auth_none(self, username: str) -> int:
        return paramiko.common.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.common.OPEN_SUCCEEDED
        return paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(self, chanid: int, origin, destination) -> int:
        """Port forwarding: dial a loopback target inside the sandbox's netns now, bridge on accept."""
        host, port = destination
        family_host = LOOPBACK_TARGETS.get(str(host).lower())
        if self.server.dial is None or family_host is None or not (isinstance(port, int) and 1 <= port <= 65535):
            log.info("event=ssh_forward_refused target=%s:%s", str(host)[:64], port)
            return paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        family = socket.AF_INET6 if ":" in family_host else socket.AF_INET
        sock: Optional[socket.socket] = None
        try:
            sock = self.server.dial(family)
            sock.settimeout(DIAL_TIMEOUT)
            sock.connect((family_host, port))
            sock.settimeout(None)
        except OSError as exc:
            log.info("event=ssh_forward_failed port=%d reason=%s", port, exc)
            if sock is not None:
                sock.close()
            return paramiko.common.OPEN_FAILED_CONNECT_FAILED
        self.forwards[chanid] = sock
        return paramiko.common.OPEN_SUCCEEDED

    def check_channel_subsystem_request(self, channel, name) -> bool:
        """``sftp``: OpenSSH's sftp-server launched inside the sandbox; other subsystems refused."""
        name_s = name.decode(errors="replace") if isinstance(name, bytes) else name
        sftp = next((p for p in SFTP_SERVER_PATHS if os.path.exists(p)), None)
        if name_s != "sftp" or sftp is None:
            log.info("event=ssh_subsystem_refused name=%s", name_s[:32])
            return False
        return self._start(channel, [sftp])

    def check_channel_env_request(self, channel, name: bytes, value: bytes) -> bool:
        st = self._state(channel)
        name_s = name.decode() if isinstance(name, bytes) else name
        value_s = value.decode() if isinstance(value, bytes) else value
        st.env_bytes += len(name_s) + len(value_s)
        if len(st.env) >= MAX_ENV or st.env_bytes > MAX_ENV_BYTES or not name_s or "=" in name_s or "\0" in name_s + value_s:
            return False
        st.env[name_s] = value_s
        return True

    def check_channel_pty_request(self, channel, term, width, height, pixelwidth, pixelheight, modes) -> bool:
        term_s = term.decode() if isinstance(term, bytes) else term
        self._state(channel).pty = (term_s or "xterm", width, height)
        return True

    def check_channel_window_change_request(self, channel, width, height, pixelwidth, pixelheight) -> bool:
        st = self._state(channel)
        if st.master_fd is not None:
            try:
                set_winsize(st.master_fd, width, height)
            except OSError:
                return False
        return True

    def check_channel_exec_request(self, channel, command: bytes) -> bool:
        cmd = command.decode(errors="replace") if isinstance(command, bytes) else command
        return self._start(channel, ["/bin/sh", "-c", cmd])

    def check_channel_shell_request(self, channel) -> bool:
        return self._start(channel, [self.server.shell, "-l"])

    def _start(self, channel, argv: list[str]) -> bool:
        st = self._state(channel)
        if st.started:
            return False
        st.started = True
        req = SessionRequest(argv=argv, env=dict(st.env), pty=st.pty)
        threading.Thread(target=self.server._run_session, args=(st, channel, req), daemon=True, name="ssh-session").start()
        return True


_REPLY_TYPES = {int(paramiko.common.MSG_CHANNEL_SUCCESS), int(paramiko.common.MSG_CHANNEL_FAILURE)}


def _signal_replies(transport: paramiko.Transport, iface: _Session) -> None:
    """Mark a channel's session as replied-to once paramiko sends the request reply.

    paramiko sends the reply to an exec/shell request only after our
    ``check_channel_*`` returns, from its own thread, and offers no hook for
    it; wrapping this transport's sender is the one deterministic signal.
    """
    # paramiko's stubs omit the private sender wrapped here
    sender: Any = transport
    original = sender._send_user_message

    def send(m) -> None:
        original(m)
        raw = m.asbytes()
        if raw and raw[0] in _REPLY_TYPES:
            for st in list(iface.channels.values()):
                if st.started:
                    st.replied.set()

    sender._send_user_message = send
