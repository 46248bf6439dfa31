"""The sandbox's network namespace: only the supervisor-side listener is reachable
(isolation-checks.md I09–I11), sandboxes cannot reach each other, teardown is clean."""

from __future__ import annotations

import os
import random
import socket
import uuid

import pytest
from openshell.plugin import IsolationContext
from openshell.supervisor import nsutil
from openshell_plugin_netns import (
    NetnsLayer,
    cleanup_sandbox,
    namespace_names,
    netns_exists,
)

CONNECT = r"""
import errno, json, socket, sys, time
res = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(5)
    start = time.monotonic()
    try:
        s.connect((host, int(port)))
        res[target] = ["ok", 0]
    except OSError as e:
        res[target] = [errno.errorcode.get(e.errno, "timeout") if e.errno else "timeout", time.monotonic() - start]
    finally:
        s.close()
print(json.dumps(res))
"""


@pytest.fixture
def launch_listener():
    """Factory: ``listen(netns, ip, port)`` → a listening socket inside ``netns`` (closed afterwards)."""
    socks: list[socket.socket] = []

    def listen(netns: str, ip: str, port: int) -> socket.socket:
        sock = nsutil.socket_in_netns(netns)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(8)
        socks.append(sock)
        return sock

    yield listen
    for sock in socks:
        sock.close()


def test_netns_prepare_fills_context(launch_sandbox) -> None:
    ctx = launch_sandbox.ctx
    index = ctx.extra["netns"]["index"]
    sandbox_ns, proxy_ns = namespace_names(ctx.sandbox_id)
    assert ctx.netns == sandbox_ns == f"osb-{ctx.sandbox_id[:8]}"
    assert ctx.extra["netns"] == {
        "index": index,
        "sandbox_ip": f"10.200.{index}.2",
        "proxy_ip": f"10.200.{index}.1",
        "proxy_netns": proxy_ns,
    }
    assert proxy_ns == sandbox_ns + "-p"
    assert netns_exists(sandbox_ns) and netns_exists(proxy_ns)


def test_sandbox_sees_only_lo_and_its_veth_without_default_route(launch_sandbox) -> None:
    out = launch_sandbox.py("import json, socket\nprint(json.dumps(sorted(n for _, n in socket.if_nameindex())))")
    assert out == ["eth0", "lo"]
    with open("/proc/net/route") as f:  # our own (root) namespace, for contrast: untouched
        assert f.read()
    res = launch_sandbox.run(["cat", "/proc/net/route"])
    routes = [line.split() for line in res.stdout.splitlines()[1:]]
    assert routes and all(r[1] != "00000000" for r in routes), routes  # no default route


def test_i09_direct_connect_to_test_host_fails_at_once(launch_sandbox) -> None:
    from openshell.testhost import TestHost

    ip = f"10.199.{random.randint(100, 250)}.2"
    with TestHost(f"lt-{uuid.uuid4().hex[:6]}", ip) as host:
        host.serve_http(8080)
        # Reachable from the root namespace (where the supervisor dials) ...
        socket.create_connection((ip, 8080), timeout=5).close()
        # ... but not from inside the sandbox.
        out = launch_sandbox.py(CONNECT, f"{ip}:8080")
    code, elapsed = out[f"{ip}:8080"]
    assert code in ("ENETUNREACH", "ECONNREFUSED", "EHOSTUNREACH"), code
    assert elapsed < 1.0


def test_i10_only_the_supervisor_side_listener_is_reachable(launch_sandbox, launch_listener) -> None:
    box = launch_sandbox
    launch_listener(box.proxy_netns, box.proxy_ip, 3128)
    targets = [f"{box.proxy_ip}:3128", f"{box.proxy_ip}:3129", f"{box.proxy_ip}:22", f"{box.proxy_ip}:80"]
    out = box.py(CONNECT, *targets)
    assert out[targets[0]][0] == "ok"
    for target in targets[1:]:
        code, elapsed = out[target]
        assert code == "ECONNREFUSED", (target, code)
        assert elapsed < 1.0


UDP_DNS = r"""
import errno, json, socket, struct, sys
query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x07example\x04test\x00\x00\x01\x00\x01"
res = {}
for host in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        # connect() so the kernel reports ICMP errors to this socket (unconnected
        # UDP sockets never see port-unreachable).
        s.connect((host, 53))
        s.send(query)
        s.recv(512)
        res[host] = "answer"
    except socket.timeout:
        res[host] = "timeout"
    except OSError as e:
        res[host] = errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
print(json.dumps(res))
"""


def test_i11_udp_dns_query_fails(launch_sandbox) -> None:
    box = launch_sandbox
    # Only addresses of this machine's test ranges: the proxy side (port unreachable)
    # and a test-host address (no route). Nothing could leave even if routing were broken.
    out = box.py(UDP_DNS, box.proxy_ip, "10.199.250.53", "127.0.0.53")
    assert out[box.proxy_ip] == "ECONNREFUSED"  # ICMP port unreachable
    assert out["10.199.250.53"] == "ENETUNREACH"
    assert out["127.0.0.53"] in ("ECONNREFUSED", "timeout")  # the sandbox's own loopback: nothing there


def test_two_sandboxes_cannot_reach_each_other(launch_factory, launch_listener) -> None:
    a = launch_factory()
    b = launch_factory()
    if a.ctx.extra["netns"]["index"] == b.ctx.extra["netns"]["index"]:
        pytest.skip("random indexes collided")  # pragma: no cover - 1 in 151
    launch_listener(b.ctx.netns, b.sandbox_ip, 8000)
    launch_listener(b.proxy_netns, b.proxy_ip, 3128)
    # Control: B reaches its own listener.
    assert b.py(CONNECT, f"{b.sandbox_ip}:8000")[f"{b.sandbox_ip}:8000"][0] == "ok"
    out = a.py(CONNECT, f"{b.sandbox_ip}:8000", f"{b.proxy_ip}:3128")
    for target, (code, elapsed) in out.items():
        assert code in ("ENETUNREACH", "EHOSTUNREACH"), (target, code)
        assert elapsed < 1.0


def test_sandboxes_past_254_share_addresses_but_each_reaches_only_its_own_proxy(launch_factory, launch_listener) -> None:
    # More than 254 live sandboxes: index 254·k + x has the addresses of index x. Each
    # sandbox has its own namespaces, so the same proxy address is a different proxy.
    x = random.randint(100, 250)
    a = launch_factory(index=x)
    b = launch_factory(index=x + 254 * random.randint(1, 63))
    assert (a.sandbox_ip, a.proxy_ip) == (b.sandbox_ip, b.proxy_ip) == (f"10.200.{x}.2", f"10.200.{x}.1")
    la = launch_listener(a.proxy_netns, a.proxy_ip, 3128)
    lb = launch_listener(b.proxy_netns, b.proxy_ip, 3128)
    la.setblocking(False)
    lb.setblocking(False)
    target = f"{a.proxy_ip}:3128"
    assert a.py(CONNECT, target)[target][0] == "ok"
    la.accept()[0].close()  # a's connection is in a's listener ...
    with pytest.raises(BlockingIOError):
        lb.accept()  # ... and not in b's
    assert b.py(CONNECT, target)[target][0] == "ok"
    lb.accept()[0].close()
    with pytest.raises(BlockingIOError):
        la.accept()


def test_teardown_removes_both_namespaces_and_is_idempotent(launch_root) -> None:
    ctx = IsolationContext(sandbox_id=uuid.uuid4().hex, policy={}, extra={"netns": {"index": 199}})
    layer = NetnsLayer()
    try:
        layer.prepare(ctx)
        names = namespace_names(ctx.sandbox_id)
        assert all(netns_exists(n) for n in names)
        layer.teardown(ctx)
        assert not any(netns_exists(n) for n in names)
        layer.teardown(ctx)  # second call: nothing left, no error
        assert cleanup_sandbox(ctx.sandbox_id) == []
    finally:
        cleanup_sandbox(ctx.sandbox_id)


def test_prepare_replaces_leftovers_of_the_same_sandbox(launch_root) -> None:
    ctx = IsolationContext(sandbox_id=uuid.uuid4().hex, policy={}, extra={"netns": {"index": 198}})
    try:
        NetnsLayer().prepare(ctx)
        again = IsolationContext(sandbox_id=ctx.sandbox_id, policy={}, extra={"netns": {"index": 198}})
        NetnsLayer().prepare(again)  # a restarted supervisor: leftovers are removed first
        assert again.netns == ctx.netns
    finally:
        assert set(cleanup_sandbox(ctx.sandbox_id)) == set(namespace_names(ctx.sandbox_id))


def test_prepare_rejects_bad_index(launch_root) -> None:
    from openshell.plugin import IsolationError

    ctx = IsolationContext(sandbox_id=uuid.uuid4().hex, policy={}, extra={"netns": {"index": 16384}})
    with pytest.raises(IsolationError, match="1..16383"):
        NetnsLayer().prepare(ctx)
    assert not any(netns_exists(n) for n in namespace_names(ctx.sandbox_id))
    assert not os.path.exists(nsutil.netns_path(namespace_names(ctx.sandbox_id)[0]))
