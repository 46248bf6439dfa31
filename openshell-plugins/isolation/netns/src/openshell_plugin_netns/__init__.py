"""Network namespace + veth pair per sandbox: the proxy is the only way out.

DESIGN.md §4 and TEAM-CONTRACTS "Network namespaces per sandbox". For sandbox
index ``N`` (1..16383; ``x`` = N for N ≤ 254, and N's place in 1..254 above
that: :func:`addresses`) ``prepare`` builds::

    osb-<id8>   (sandbox)            osb-<id8>-p   (supervisor side)
    lo up                             lo up
    eth0 10.200.x.2/24  <── veth ──>  osbp 10.200.x.1/24

Every sandbox has its own pair of namespaces, so two sandboxes with the same
``x`` never meet: the address only has to differ from nothing else in its two
namespaces. Above 254 live sandboxes addresses repeat; the index (unique per
gateway) stays the sandbox's identity, and its logs name the sandbox id.

No default route exists in the sandbox namespace, and the only thing that will
ever listen in the supervisor-side namespace is the proxy (created there with
``nsutil.socket_in_netns``). So from the sandbox every other port of
10.200.x.1 answers RST at once, UDP gets ICMP port-unreachable, and any other
address fails with ENETUNREACH — no firewall rules needed.

Namespaces are created without forking (the supervisor is multi-threaded): a
short-lived thread unshares its own network namespace and bind-mounts it under
``/run/netns`` exactly like ``ip netns add`` does.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from openshell.plugin import (
    NETNS_ORDER,
    IsolationContext,
    IsolationError,
    IsolationLayer,
    ProbeResult,
    hookimpl,
    nsutil,
)

log = logging.getLogger("openshell.isolation.netns")

SUBNET_PREFIX = "10.200"
INDEX_MAX = 16383  # the gateway store's bound (NETNS_INDEX_MAX)
SANDBOX_IFNAME = "eth0"
PROXY_IFNAME = "osbp"
_MNT_DETACH = 2
_MS_SHARED = 1 << 20


def namespace_names(sandbox_id: str) -> tuple[str, str]:
    """Return ``(sandbox_ns, proxy_ns)`` names for a sandbox id.

    :param sandbox_id: the sandbox's id; its first 8 characters name the namespaces.
    :returns: e.g. ``("osb-1a2b3c4d", "osb-1a2b3c4d-p")``.
    """
    short = sandbox_id[:8]
    return f"osb-{short}", f"osb-{short}-p"


def addresses(index: int) -> tuple[str, str]:
    """Return ``(sandbox_ip, proxy_ip)`` for sandbox index ``index`` (1..16383):
    ``10.200.x.2`` and ``10.200.x.1`` with ``x`` = ``(index - 1) % 254 + 1`` (1..254;
    e.g. 7 → x 7, 255 → x 1).

    Raises ``IsolationError`` for an index out of range.
    """
    if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= INDEX_MAX:
        raise IsolationError(f"netns index must be an integer 1..{INDEX_MAX}, got {index!r}")
    x = (index - 1) % 254 + 1
    return f"{SUBNET_PREFIX}.{x}.2", f"{SUBNET_PREFIX}.{x}.1"


# --------------------------------------------------------------------------- namespace files


def _run_in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a fresh thread and return its result (or raise its error).

    Used because ``unshare(CLONE_NEWNET)`` changes the calling *thread* only; a
    throwaway thread keeps the caller's namespace untouched and needs no fork.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    t = threading.Thread(target=run, name="osb-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _ensure_netns_dir() -> None:
    """Make ``/run/netns`` a shared mount point, as iproute2 does, so namespaces
    created later are visible to every mount namespace that copied it."""
    os.makedirs(nsutil.NETNS_DIR, mode=0o755, exist_ok=True)
    libc = nsutil._libc
    if libc.mount(b"none", nsutil.NETNS_DIR.encode(), b"none", ctypes.c_ulong(_MS_SHARED | nsutil.MS_REC), None) == 0:
        return
    # Not a mount point yet: bind it onto itself, then mark it shared.
    try:
        nsutil.mount(nsutil.NETNS_DIR, nsutil.NETNS_DIR, None, nsutil.MS_BIND | nsutil.MS_REC)
        nsutil.mount("none", nsutil.NETNS_DIR, None, _MS_SHARED | nsutil.MS_REC)
    except OSError as exc:
        raise IsolationError(f"cannot prepare {nsutil.NETNS_DIR}: {exc}") from exc


def create_named_netns(name: str) -> None:
    """Create network namespace ``name`` pinned at ``/run/netns/<name>``.

    Raises ``FileExistsError`` when it already exists, ``OSError`` otherwise.
    """
    _ensure_netns_dir()
    path = nsutil.netns_path(name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))

    def make() -> None:
        nsutil.unshare(nsutil.CLONE_NEWNET)
        # thread-self: the new namespace belongs to this thread, not the process.
        nsutil.mount("/proc/thread-self/ns/net", path, None, nsutil.MS_BIND)

    try:
        _run_in_thread(make)
    except BaseException:
        _remove_named_netns(name)
        raise


def _remove_named_netns(name: str) -> bool:
    """Unmount and unlink ``/run/netns/<name>``; return True when something was removed."""
    path = nsutil.netns_path(name)
    nsutil._libc.umount2(path.encode(), _MNT_DETACH)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def netns_exists(name: str) -> bool:
    """Return True when ``/run/netns/<name>`` exists."""
    return os.path.exists(nsutil.netns_path(name))


def cleanup_sandbox(sandbox_id: str) -> list[str]:
    """Delete both namespaces of ``sandbox_id`` (leftovers of a crashed supervisor).

    Idempotent. The veth pair disappears with its namespaces.

    :returns: names of the namespaces that were removed.
    """
    removed = []
    for name in namespace_names(sandbox_id):
        if _remove_named_netns(name):
            removed.append(name)
    return removed


# --------------------------------------------------------------------------- links


def _write_sysctl(key: str, value: str) -> None:
    with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(value)


def _configure(sandbox_ns: str, proxy_ns: str, sandbox_ip: str, proxy_ip: str) -> None:
    """Create the veth pair and addresses. Runs in a throwaway thread (setns is per thread)."""
    # Our own rtnetlink client, not pyroute2: its import alone was ~130 ms of every
    # sandbox start. The child launcher never needs either.
    from openshell_plugin_netns.rtnl import Rtnl

    sandbox_fd = os.open(nsutil.netns_path(sandbox_ns), os.O_RDONLY)
    try:
        # /proc/sys/net reflects the opener's namespace: keep IPv6 off the
        # veth so the only path between the two sides is 10.200.x.0/24.
        with nsutil.in_netns(proxy_ns), Rtnl() as rt:
            rt.add_veth(PROXY_IFNAME, SANDBOX_IFNAME, sandbox_fd)
            _write_sysctl(f"net.ipv6.conf.{PROXY_IFNAME}.disable_ipv6", "1")
            rt.set_up(rt.link("lo")[0])
            idx = rt.link(PROXY_IFNAME)[0]
            rt.add_ipv4(idx, proxy_ip, 24)
            rt.set_up(idx)
        with nsutil.in_netns(sandbox_ns), Rtnl() as rt:
            _write_sysctl(f"net.ipv6.conf.{SANDBOX_IFNAME}.disable_ipv6", "1")
            rt.set_up(rt.link("lo")[0])
            idx = rt.link(SANDBOX_IFNAME)[0]
            rt.add_ipv4(idx, sandbox_ip, 24)
            rt.set_up(idx)
            # The carrier comes up asynchronously; wait so the first connect
            # after prepare() does not race the link watcher.
            deadline = time.monotonic() + 2.0
            while rt.link(SANDBOX_IFNAME)[1] != "UP":
                if time.monotonic() > deadline:
                    raise IsolationError(f"veth {SANDBOX_IFNAME} in {sandbox_ns} did not come up")
                time.sleep(0.005)
    finally:
        os.close(sandbox_fd)


# --------------------------------------------------------------------------- the layer


class NetnsLayer(IsolationLayer):
    """Puts the sandbox in its own network namespace whose only peer is the proxy."""

    name = "netns"
    summary = "network namespace + veth pair; the supervisor's proxy is the only way out"
    order = NETNS_ORDER
    required = True

    def probe(self) -> ProbeResult:
        """Report whether network namespaces can be entered here (no side effects)."""
        if not os.path.exists("/proc/self/ns/net"):
            return ProbeResult(False, "kernel without network namespaces (/proc/self/ns/net missing)")
        if os.geteuid() != 0:
            return ProbeResult(False, "network namespaces need root (CAP_SYS_ADMIN)")
        return ProbeResult(True, "network namespaces available")

    def prepare(self, ctx: IsolationContext) -> None:
        """Create both namespaces and the veth pair (root, in the supervisor).

        Reads ``ctx.extra["netns"]["index"]``; sets ``ctx.netns`` and adds
        ``sandbox_ip``, ``proxy_ip``, ``proxy_netns`` to ``ctx.extra["netns"]``.
        Leftovers of the same sandbox id are removed first. Raises
        ``IsolationError`` (and removes what it built) when any step fails.
        """
        info = ctx.extra.setdefault("netns", {})
        sandbox_ip, proxy_ip = addresses(info.get("index"))
        sandbox_ns, proxy_ns = namespace_names(ctx.sandbox_id)
        if cleanup_sandbox(ctx.sandbox_id):
            log.warning("event=netns_leftovers_removed sandbox=%s", ctx.sandbox_id)
        try:
            create_named_netns(sandbox_ns)
            create_named_netns(proxy_ns)
            _run_in_thread(lambda: _configure(sandbox_ns, proxy_ns, sandbox_ip, proxy_ip))
        except Exception as exc:
            cleanup_sandbox(ctx.sandbox_id)
            raise IsolationError(f"cannot build network namespace for sandbox {ctx.sandbox_id}: {exc}") from exc
        ctx.netns = sandbox_ns
        info.update(sandbox_ip=sandbox_ip, proxy_ip=proxy_ip, proxy_netns=proxy_ns)
        log.info("event=netns_ready sandbox=%s netns=%s sandbox_ip=%s proxy_ip=%s", ctx.sandbox_id, sandbox_ns, sandbox_ip, proxy_ip)

    def apply_in_child(self, ctx: IsolationContext) -> None:
        """Move the (single-threaded) launcher into ``/run/netns/<ctx.netns>``.

        Raises ``IsolationError`` when the namespace is unset or missing.
        """
        if not ctx.netns:
            raise IsolationError("no network namespace prepared (ctx.netns is empty)")
        try:
            fd = os.open(nsutil.netns_path(ctx.netns), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise IsolationError(f"network namespace {ctx.netns}: {exc.strerror}") from exc
        try:
            nsutil.setns(fd, nsutil.CLONE_NEWNET)
        except OSError as exc:
            raise IsolationError(f"setns {ctx.netns}: {exc.strerror}") from exc
        finally:
            os.close(fd)

    def teardown(self, ctx: IsolationContext) -> None:
        """Delete both namespaces (the veth goes with them). Idempotent."""
        cleanup_sandbox(ctx.sandbox_id)
        if ctx.netns and ctx.netns not in namespace_names(ctx.sandbox_id):
            _remove_named_netns(ctx.netns)


@hookimpl
def register_isolation_layers(register: Callable[[type], None]) -> None:
    register(NetnsLayer)


__all__ = ["NetnsLayer", "addresses", "cleanup_sandbox", "create_named_netns", "namespace_names", "netns_exists"]
