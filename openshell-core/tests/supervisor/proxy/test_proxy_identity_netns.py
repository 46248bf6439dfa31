"""Identity lookup with the client in its own network namespace (POLICY.md §2.4).

The layout of a real sandbox: the client runs inside a namespace (here a test
host's namespace stands in for the sandbox's), the proxy listens in the root
namespace on the veth address, and ``IdentityResolver(netns=...)`` must find
the client's socket in *that* namespace's TCP table — the root namespace's
table does not have it.
"""

from __future__ import annotations

import json
import os
import socket

import pytest
from openshell.supervisor import nsutil
from openshell.supervisor.proxy.identity import IdentityError, IdentityResolver

pytestmark = pytest.mark.timeout(120)


CURL = "/usr/bin/curl"
BASH = os.path.realpath("/bin/bash")


@pytest.fixture
def sandbox_ns(test_host_factory):
    """A namespace standing in for the sandbox's (its .1 is where the proxy listens)."""
    return test_host_factory("pxs")


def test_identity_found_in_sandbox_namespace(proxy_factory, upstream, sandbox_ns, clients):
    yaml_text = f"""
version: 1
network_policies:
  web:
    endpoints: [{{host: web.test, port: 8080, allowed_ips: [10.199.0.0/16]}}]
    binaries: [{{path: {CURL}}}]
"""
    proxy = proxy_factory(yaml_text, hosts={"web.test": [upstream.ip]}, netns=sandbox_ns.netns, listen_ip=sandbox_ns.gateway_ip)
    inside = tuple(sandbox_ns.exec_argv([]))
    res = clients.run([*inside, BASH, "-c", f"{CURL} -sS --max-time 20 -p -x {proxy.url} http://web.test:8080/ns; true"])
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["path"] == "/ns"
    [line] = proxy.decisions()
    assert line["decision"] == "ALLOWED" and line["binary"] == CURL
    # bash is inside the namespace; `ip netns exec` became bash; pytest is outside: the walk stops.
    assert line["ancestors"] == BASH


def test_python_client_in_namespace_is_denied_by_binary(proxy_factory, upstream, sandbox_ns, clients):
    yaml_text = f"""
version: 1
network_policies:
  web:
    endpoints: [{{host: web.test, port: 8080, allowed_ips: [10.199.0.0/16]}}]
    binaries: [{{path: {CURL}}}]
"""
    proxy = proxy_factory(yaml_text, hosts={"web.test": [upstream.ip]}, netns=sandbox_ns.netns, listen_ip=sandbox_ns.gateway_ip)
    data = clients.raw(proxy.hostport, "CONNECT web.test:8080 HTTP/1.1\r\n\r\n", prefix=tuple(sandbox_ns.exec_argv([])))
    doc = json.loads(data.partition(b"\r\n\r\n")[2])
    assert doc["error"] == "policy_denied" and clients.python in doc["reason"]


def test_client_outside_the_namespace_is_denied_fail_closed(proxy_factory, upstream, sandbox_ns, clients):
    # The resolver looks only in the sandbox's table: a root-namespace client has no
    # entry there, so identity cannot be determined and the connection is denied.
    proxy = proxy_factory(
        "version: 1\nnetwork_policies: {}\n",
        hosts={"web.test": [upstream.ip]},
        netns=sandbox_ns.netns,
        listen_ip=sandbox_ns.gateway_ip,
    )
    data = clients.raw(proxy.hostport, "CONNECT web.test:8080 HTTP/1.1\r\n\r\n")
    doc = json.loads(data.partition(b"\r\n\r\n")[2])
    assert doc["error"] == "policy_denied" and "identity" in doc["reason"]
    [line] = proxy.decisions()
    assert line["decision"] == "DENIED" and line["engine"] == "identity"


def test_lookup_of_unknown_socket_raises(sandbox_ns):
    resolver = IdentityResolver(netns=sandbox_ns.netns)
    try:
        with pytest.raises(IdentityError):
            resolver._executor.submit(resolver.lookup_sync, "10.199.1.2", 1234, "10.199.1.1", 3128).result(10)
    finally:
        resolver.close()


def test_inet_diag_and_proc_tables_find_the_same_socket_in_the_namespace(sandbox_ns):
    # A connection that exists only inside the sandbox namespace (its loopback).
    with nsutil.in_netns(sandbox_ns.netns):
        listener = socket.socket()
        client = socket.socket()
    with listener, client:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client.connect(listener.getsockname())
        accepted, peer = listener.accept()
        with accepted:
            local = accepted.getsockname()
            expected = os.fstat(client.fileno()).st_ino
            resolver = IdentityResolver(netns=sandbox_ns.netns)
            try:

                def both():
                    diag = resolver._diag()
                    assert diag is not None, "inet_diag unavailable"
                    return (
                        resolver._socket_inode_diag(diag, peer[0], peer[1], local[0], local[1]),
                        resolver._socket_inode_proc(peer[0], peer[1], local[0], local[1]),
                    )

                assert resolver._executor.submit(both).result(10) == (expected, expected)
            finally:
                resolver.close()
            # The root namespace does not have that connection.
            host_mode = IdentityResolver(netns=None)
            try:
                with pytest.raises(IdentityError):
                    host_mode._executor.submit(host_mode._socket_inode, peer[0], peer[1], local[0], local[1]).result(10)
            finally:
                host_mode.close()
