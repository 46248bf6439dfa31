"""Destination safety (POLICY.md §2.5): which resolved addresses may be dialled.

Runs after the policy engine allowed a connection. The engine decides *who* may
reach *which name*; this module decides whether the addresses that name resolved
to are acceptable, so that a DNS answer (or an IP literal) cannot point an
allowed rule at loopback, cloud metadata or an internal network.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

from openshell.policy.hostaddrs import HOST_ADDRESSES
from openshell.policy.hosts import HOST_ANY, HOST_WILDCARD, host_kind, ip_literal
from openshell.policy.model import Endpoint, NetworkRule

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: blocked whatever the policy says: (network, why)
ALWAYS_BLOCKED: tuple[tuple[IPNetwork, str], ...] = (
    (ipaddress.ip_network("127.0.0.0/8"), "loopback"),
    (ipaddress.ip_network("::1/128"), "loopback"),
    (ipaddress.ip_network("169.254.0.0/16"), "link-local (cloud metadata)"),
    (ipaddress.ip_network("fe80::/10"), "link-local"),
    # 0.0.0.0 is "unspecified"; Linux dials the local host for any 0/8 address.
    (ipaddress.ip_network("0.0.0.0/8"), "unspecified"),
    (ipaddress.ip_network("::/128"), "unspecified"),
)

#: names of the checks, as they appear in denial reasons
CHECK_ALWAYS_BLOCKED = "always-blocked"
CHECK_ALLOWED_IPS = "allowed_ips"
CHECK_PUBLIC_ONLY = "public-only"
CHECK_UNRESOLVED = "resolution"
CHECK_HOST_ADDRESS = "host-address"


class _Default(enum.Enum):
    HOST = enum.auto()


#: sentinel: use the cached addresses of the proxy's host (:data:`HOST_ADDRESSES`)
_HOST: Final = _Default.HOST


@dataclass(frozen=True)
class DestinationResult:
    """Outcome of :func:`check_destination`.

    :ivar ok: every address passed.
    :ivar addresses: the validated addresses, in resolution order, without duplicates
        (empty when not ok).
    :ivar check: the failing check's name (``always-blocked``, ``allowed_ips``,
        ``public-only``, ``resolution``), empty when ok.
    :ivar reason: one sentence naming the check and the address, empty when ok.
    """

    ok: bool
    addresses: tuple[str, ...] = ()
    check: str = ""
    reason: str = ""


def _unmap(addr: IPAddress) -> IPAddress:
    # ::ffff:127.0.0.1 reaches 127.0.0.1; judge the IPv4 address it carries.
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


#: OpenShell's own address plan: every sandbox's veth pair lives in 10.200.0.0/16
#: inside network namespaces, so from the proxy (root namespace) these addresses
#: are never a sandbox — on most hosts they follow the default route off the
#: machine. Refused at dial time; validation leaves allowed_ips overlapping it to
#: the supervisor, which names the link network in its error.
SANDBOX_LINK_NETWORK = ipaddress.ip_network("10.200.0.0/16")


def blocked_reason(addr: IPAddress) -> str | None:
    """Return why ``addr`` is always blocked (``"loopback"``, …) or None."""
    addr = _unmap(addr)
    for net, why in ALWAYS_BLOCKED:
        if addr.version == net.version and addr in net:
            return why
    if addr.version == 4 and addr in SANDBOX_LINK_NETWORK:
        return "the sandbox link network (10.200.0.0/16)"
    return None


def overlapping_blocked(net: IPNetwork) -> tuple[IPNetwork, str] | None:
    """Return the always-blocked range (and why) that ``net`` overlaps, or None.

    Used by validation: an ``allowed_ips`` entry may not reopen a blocked range.
    """
    for blocked, why in ALWAYS_BLOCKED:
        if net.version == blocked.version and net.overlaps(blocked):
            return blocked, why
    if isinstance(net, ipaddress.IPv6Network):
        # ::ffff:0:0/96 carries IPv4 addresses, including the blocked ones.
        mapped = ipaddress.ip_network("::ffff:0:0/96")
        if net.overlaps(mapped):
            return mapped, "IPv4-mapped (reaches loopback and link-local)"
    return None


@functools.lru_cache(maxsize=1024)
def _parse_networks_cached(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def parse_networks(entries: Sequence[str]) -> tuple[IPNetwork, ...]:
    """Parse ``allowed_ips`` entries (CIDR or bare IP); raises ``ValueError`` on a bad one."""
    # Cached: the same endpoint's allowed_ips are checked on every connection.
    return _parse_networks_cached(tuple(entries))


@functools.lru_cache(maxsize=8)
def _local_keys(local: frozenset[IPAddress]) -> frozenset[tuple[int, int]]:
    # (version, integer) pairs hash far faster than address objects; the host's
    # set changes rarely, so this is computed once per change (frozensets cache their hash).
    return frozenset((_unmap(a).version, int(_unmap(a))) for a in local)


def _named_exactly(addr: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    """Whether an ``allowed_ips`` entry is exactly ``addr`` (bare IP, /32 or /128)."""
    addr = _unmap(addr)
    return any(n.version == addr.version and n.prefixlen == n.max_prefixlen and n.network_address == addr for n in networks)


def _is_public(addr: IPAddress) -> bool:
    # is_global excludes RFC 1918, fc00::/7, CGNAT (100.64/10) and the other
    # special-purpose ranges; multicast is never a sensible TCP destination.
    addr = _unmap(addr)
    return addr.is_global and not addr.is_multicast


def check_destination(
    host: str,
    endpoint: Endpoint,
    resolved: Sequence[str],
    networks: Sequence[IPNetwork] | None = None,
    local: Collection[IPAddress] | None | _Default = _HOST,
) -> DestinationResult:
    """Check every address a connection could go to (POLICY.md §2.5).

    :param host: the requested host, normalised (see ``hosts.normalise_host``).
    :param endpoint: the policy endpoint that allowed the connection.
    :param resolved: the addresses the proxy resolved ``host`` to (hosts entries
        first, then DNS). Ignored when ``host`` is an IP literal: the literal is
        the address.
    :param networks: ``endpoint.allowed_ips`` already parsed (callers on the hot
        path parse once); parsed here when None.
    :param local: the addresses of the host the proxy runs on; default: read
        from the proxy's network namespace and cached (:mod:`openshell.policy.hostaddrs`).
        None means they could not be read: every address is then refused.
    :returns: a :class:`DestinationResult`; never raises for bad input (a
        malformed address fails the check).

    Rules, in order: always-blocked ranges deny; an address of the host itself
    denies unless ``allowed_ips`` names exactly that address (a bare IP or a
    ``/32`` / ``/128``; a wider range does not count); with ``allowed_ips`` every address
    must fall inside one entry; an IP-literal host is otherwise allowed; an exact
    host may resolve to private addresses; a wildcard (or empty) host without
    ``allowed_ips`` must resolve to public addresses only.
    """
    literal = ip_literal(host)
    raw = [host] if literal is not None else list(resolved)
    if not raw:
        return DestinationResult(False, check=CHECK_UNRESOLVED, reason=f"destination check {CHECK_UNRESOLVED}: {host} resolved to no address")
    if networks is None:
        try:
            networks = parse_networks(endpoint.allowed_ips)
        except ValueError:
            return DestinationResult(
                False, check=CHECK_ALLOWED_IPS, reason=f"destination check {CHECK_ALLOWED_IPS}: the endpoint's allowed_ips cannot be parsed"
            )
    kind = host_kind(endpoint.host)
    if local is _HOST:
        local = HOST_ADDRESSES.get()
    if local is None:
        return DestinationResult(
            False, check=CHECK_HOST_ADDRESS, reason=f"destination check {CHECK_HOST_ADDRESS}: the host's own addresses cannot be read, so none is dialled"
        )
    local_keys = _local_keys(local) if isinstance(local, frozenset) else _local_keys(frozenset(local))
    out: list[str] = []
    for text in raw:
        addr = ip_literal(text.strip("[]"))
        if addr is None:
            return DestinationResult(False, check=CHECK_UNRESOLVED, reason=f"destination check {CHECK_UNRESOLVED}: {text!r} is not an IP address")
        why = blocked_reason(addr)
        if why is not None:
            what = f"{addr} is" if literal is not None else f"{host} resolves to {addr}, which is"
            return DestinationResult(
                False,
                check=CHECK_ALWAYS_BLOCKED,
                reason=f"destination check {CHECK_ALWAYS_BLOCKED}: {what} {why} and always blocked; no policy can allow it",
            )
        plain = _unmap(addr)
        if (plain.version, int(plain)) in local_keys and not _named_exactly(addr, networks):
            what = f"{addr} is" if literal is not None else f"{host} resolves to {addr}, which is"
            return DestinationResult(
                False,
                check=CHECK_HOST_ADDRESS,
                reason=(
                    f"destination check {CHECK_HOST_ADDRESS}: {what} an address of the host the sandbox runs on; "
                    f"to allow it, list exactly {_unmap(addr)} in the endpoint's allowed_ips"
                ),
            )
        if networks:
            if not any(addr.version == n.version and addr in n for n in networks):
                return DestinationResult(
                    False,
                    check=CHECK_ALLOWED_IPS,
                    reason=f"destination check {CHECK_ALLOWED_IPS}: {host} resolves to {addr}, outside the endpoint's allowed_ips ({', '.join(endpoint.allowed_ips)})",
                )
        elif literal is None and kind in (HOST_WILDCARD, HOST_ANY) and not _is_public(addr):
            return DestinationResult(
                False,
                check=CHECK_PUBLIC_ONLY,
                reason=(
                    f"destination check {CHECK_PUBLIC_ONLY}: {host} resolves to non-public address {addr} and the "
                    f"endpoint host {endpoint.host or '(any)'!s} is a wildcard; add allowed_ips to the endpoint or name the host exactly"
                ),
            )
        s = str(addr)
        if s not in out:
            out.append(s)
    return DestinationResult(True, addresses=tuple(out))


def unreachable_endpoints(rules: Sequence[NetworkRule]) -> list[tuple[str, str]]:
    """Endpoints no connection can ever reach: their host is an always-blocked address
    literal (``127.0.0.1``, ``169.254.169.254``, ``::1``) or ``localhost``.

    They are valid policy (a rule may name them), but a user who writes one almost
    always means a service on the host or in the sandbox; ``policy validate`` warns.

    :returns: ``(field path, message)`` per such endpoint, in document order.
    """
    found: list[tuple[str, str]] = []
    for rule in rules:
        for i, ep in enumerate(rule.endpoints):
            where = f"network_policies.{rule.key}.endpoints[{i}].host"
            addr = ip_literal(ep.host)
            why = blocked_reason(addr) if addr is not None else ("loopback" if ep.host == "localhost" or ep.host.endswith(".localhost") else None)
            if why:
                found.append(
                    (
                        where,
                        f"{ep.host} is {why}, which the proxy always refuses: no connection will match this endpoint "
                        "(a program reaches the sandbox's own loopback without the proxy; a host service is reached "
                        "by its address on a test or private network, see docs/policy.md 'Destination safety')",
                    )
                )
    return found
