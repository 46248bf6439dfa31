"""The sandbox's egress proxy (POLICY.md §2, DESIGN.md §4).

Public API::

    ProxyServer(sandbox_id, engine, compiled, *, hosts={}, identity, logger=None, inspector=None)
        await start(sock); await close(); set_policy(compiled); .port
    IdentityResolver(netns, stop_at=(), attributor=None) -> lookup(peer_ip, peer_port, local_ip, local_port) -> ProcessIdentity
    ConnectAttributor(writable, sandbox_uid, stop_at)    # who called connect(): seccomp user notifications
    Inspector, Flow             # seam for HTTP inspection of ``protocol: rest`` endpoints

Modules, one job each: ``server`` (accept, decide, dial), ``http1`` (request
head parsing), ``forward`` (absolute-form → origin-form), ``identity`` (kernel
process identity), ``resolve`` (hosts entries, then DNS), ``responses`` (the
bytes clients see), ``relay`` (raw byte copy), ``log`` (decision lines),
``attribution`` (connect-time identity records), ``inspect`` (the L7 seam), ``l7`` (HTTP inspection inside TLS: ``HttpInspector``,
``RequestHook``, ``serve_local``).
"""

# Exported (and so imported with the package, which the supervisor fork server preloads):
# otherwise its first import, ~2 ms, falls on every sandbox's create-to-READY.
from openshell.supervisor.proxy.attribution import ConnectAttributor
from openshell.supervisor.proxy.identity import (
    IdentityError,
    IdentityResolver,
    ProcessIdentity,
)
from openshell.supervisor.proxy.inspect import Flow, Inspector
from openshell.supervisor.proxy.server import ProxyServer

__all__ = ["ConnectAttributor", "Flow", "IdentityError", "IdentityResolver", "Inspector", "ProcessIdentity", "ProxyServer"]
