"""SSH session tokens (limits, expiry, revocation) and the wire shapes shared with the 0.1.5 SDK."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
from openshell._proto import openshell_pb2
from openshell.gateway.connect_ssh import relay
from openshell.gateway.ssh_sessions import SshSessions, TokenInvalid, TooManyTunnels


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_is_checked_against_its_sandbox_and_expires():
    clock = Clock()
    reg = SshSessions(ttl=60, clock=clock)
    token, session = reg.create("sb1")
    assert reg.check("sb1", token) is session
    with pytest.raises(TokenInvalid):
        reg.check("sb2", token)
    clock.now += 61
    with pytest.raises(TokenInvalid):
        reg.check("sb1", token)


def test_only_a_digest_of_the_token_is_kept():
    reg = SshSessions()
    token, session = reg.create("sb1")
    assert token.encode() not in session.digest and token not in repr(reg.__dict__)


def test_revoked_token_stops_working_and_revoke_reports_unknown_tokens():
    reg = SshSessions()
    token, _ = reg.create("sb1")
    assert reg.revoke(token) is True
    assert reg.revoke(token) is False
    assert reg.revoke("nope") is False
    with pytest.raises(TokenInvalid):
        reg.acquire("sb1", token)


def test_tunnel_limits_per_token_and_per_sandbox_and_release():
    reg = SshSessions(per_token=2, per_sandbox=3)
    t1, _ = reg.create("sb")
    t2, _ = reg.create("sb")
    held = [reg.acquire("sb", t1), reg.acquire("sb", t1)]
    with pytest.raises(TooManyTunnels, match="token"):
        reg.acquire("sb", t1)
    held.append(reg.acquire("sb", t2))
    with pytest.raises(TooManyTunnels, match="sandbox"):
        reg.acquire("sb", t2)
    reg.release(held.pop())
    held.append(reg.acquire("sb", t2))
    for s in held:
        reg.release(s)
    assert reg._open == {}


def test_deleting_a_sandbox_forgets_its_tokens():
    reg = SshSessions()
    token, _ = reg.create("sb")
    reg.revoke_sandbox("sb")
    with pytest.raises(TokenInvalid):
        reg.check("sb", token)


# Field numbers of the published SDK (openshell==0.1.5 descriptors), see docs/sdk-compat.md.
SDK_FIELDS = {
    "CreateSshSessionRequest": {"sandbox": 1, "workspace_scope": 3},
    "CreateSshSessionResponse": {
        "sandbox_id": 1,
        "token": 2,
        "gateway_host": 3,
        "gateway_port": 4,
        "gateway_scheme": 5,
        "host_key_fingerprint": 7,
        "expiration_time": 108,
    },
    "RevokeSshSessionRequest": {"token": 1, "allow_missing": 2},
    "RevokeSshSessionResponse": {"outcome": 2},
    "ExecSandboxInput": {"start": 1, "stdin": 2, "resize": 3},
    "ExecSandboxWindowResize": {"cols": 1, "rows": 2},
    "ExecSandboxRequest": {"tty": 7, "cols": 8, "rows": 9},
}


@pytest.mark.parametrize("message", sorted(SDK_FIELDS))
def test_ssh_and_interactive_messages_match_the_sdk(message):
    desc = openshell_pb2.DESCRIPTOR.message_types_by_name[message]
    assert {f.name: f.number for f in desc.fields if f.name in SDK_FIELDS[message]} == SDK_FIELDS[message]


def test_interactive_and_ssh_rpcs_have_the_sdk_shapes():
    service = openshell_pb2.DESCRIPTOR.services_by_name["OpenShell"]
    m = service.methods_by_name["ExecSandboxInteractive"]
    assert (m.input_type.name, m.output_type.name, m.client_streaming, m.server_streaming) == ("ExecSandboxInput", "ExecSandboxEvent", True, True)
    for name in ("CreateSshSession", "RevokeSshSession"):
        m = service.methods_by_name[name]
        assert (m.input_type.name, m.output_type.name) == (f"{name}Request", f"{name}Response")


# --------------------------------------------------------------------------- the byte relay


def _relay_pair(idle_timeout: float):
    """Run relay() between a fake client and a fake supervisor (socket pairs); return both far ends."""

    client_far, client_near = socket.socketpair()
    sup_near, sup_far = socket.socketpair()

    async def main() -> None:
        client_near.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=client_near)
        await relay(reader, writer, sup_near, idle_timeout=idle_timeout)
        writer.close()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    return client_far, sup_far, thread


def test_relay_moves_bytes_both_ways_and_ends_when_the_supervisor_closes():
    client, sup, thread = _relay_pair(idle_timeout=30)
    client.settimeout(5)
    sup.settimeout(5)
    client.sendall(b"from-client")
    assert sup.recv(100) == b"from-client"
    sup.sendall(b"from-supervisor")
    assert client.recv(100) == b"from-supervisor"
    sup.close()
    assert client.recv(100) == b""
    thread.join(5)
    assert not thread.is_alive()


def test_relay_closes_an_idle_tunnel():
    client, sup, thread = _relay_pair(idle_timeout=0.5)
    client.settimeout(10)
    t0 = __import__("time").monotonic()
    assert client.recv(100) == b""  # closed by the gateway, nobody sent anything
    assert __import__("time").monotonic() - t0 < 5
    thread.join(5)
    sup.close()
