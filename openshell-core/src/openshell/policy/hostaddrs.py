"""The addresses of the machine the proxy dials from (destination safety).

A server on the host bound to 0.0.0.0 answers on every one of the host's
addresses, not only on loopback; refusing 127/8 alone therefore leaves the
host reachable through, e.g., the host side of a veth or a LAN address.
:class:`LocalAddresses` keeps the set of addresses configured on the
interfaces of the calling network namespace (a netlink ``RTM_GETADDR`` dump),
re-read at most once per :data:`REFRESH_SECONDS` so the per-connection cost
is a set lookup.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Callable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: how stale the cached set may get (an address added to the host is refused
#: within this many seconds)
REFRESH_SECONDS = 1.0

_RTM_NEWADDR = 20
_RTM_GETADDR = 22
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_NLMSG_HDR = struct.Struct("=LHHLL")
_IFADDRMSG = struct.Struct("=BBBBL")
_RTA_HDR = struct.Struct("=HH")
_MAX_DUMP_BYTES = 16 << 20  # a host with more addresses than this is not one we run on


def _align(n: int) -> int:
    return (n + 3) & ~3


def read_interface_addresses(make_socket: Callable[[], socket.socket] | None = None) -> frozenset[IPAddress]:
    """Every address configured on an interface of one network namespace.

    :param make_socket: returns a ``NETLINK_ROUTE`` socket (created in the
        namespace to read); default: a new one in the caller's namespace.
    :returns: IPv4 and IPv6 addresses (``IFA_LOCAL`` when present, as the
        ``IFA_ADDRESS`` of a point-to-point link is the peer's).
    :raises OSError: netlink failed or answered with an error.
    """
    sock = make_socket() if make_socket else socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    out: set[IPAddress] = set()
    try:
        sock.settimeout(2.0)
        seq = int(time.monotonic_ns() & 0x7FFFFFFF)
        body = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        sock.send(_NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0) + body)
        total = 0
        while True:
            data = sock.recv(1 << 16)
            total += len(data)
            if not data or total > _MAX_DUMP_BYTES:
                raise OSError("netlink address dump ended early or is too large")
            off = 0
            while off + _NLMSG_HDR.size <= len(data):
                length, kind, _flags, _seq, _pid = _NLMSG_HDR.unpack_from(data, off)
                if length < _NLMSG_HDR.size:
                    raise OSError("malformed netlink message")
                if kind == _NLMSG_DONE:
                    return frozenset(out)
                if kind == _NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", data, off + _NLMSG_HDR.size)
                    raise OSError(-err, "netlink RTM_GETADDR failed")
                if kind == _RTM_NEWADDR:
                    family = data[off + _NLMSG_HDR.size]
                    attrs: dict[int, bytes] = {}
                    a = off + _NLMSG_HDR.size + _IFADDRMSG.size
                    end = off + length
                    while a + _RTA_HDR.size <= end:
                        alen, atype = _RTA_HDR.unpack_from(data, a)
                        if alen < _RTA_HDR.size:
                            break
                        attrs[atype] = data[a + _RTA_HDR.size : a + alen]
                        a += _align(alen)
                    raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
                    if raw is not None and family in (socket.AF_INET, socket.AF_INET6):
                        out.add(ipaddress.ip_address(raw))
                off += _align(length)
    finally:
        sock.close()


class LocalAddresses:
    """Cached address set of one or more network namespaces.

    :param sources: socket factories, one per namespace to read (see
        :func:`read_interface_addresses`); default: the caller's namespace.
    :param refresh: seconds a read stays fresh.

    ``get()`` returns the set, or None when it could not be read (callers
    must then refuse: a host address cannot be told apart).
    """

    def __init__(self, sources: tuple[Callable[[], socket.socket] | None, ...] = (None,), refresh: float = REFRESH_SECONDS) -> None:
        self._sources = sources
        self._refresh = refresh
        self._lock = threading.Lock()
        self._value: frozenset[IPAddress] | None = None
        self._read_at = float("-inf")

    def get(self) -> frozenset[IPAddress] | None:
        now = time.monotonic()
        if now - self._read_at < self._refresh:
            return self._value
        with self._lock:
            if now - self._read_at < self._refresh:
                return self._value
            try:
                addrs: set[IPAddress] = set()
                for source in self._sources:
                    addrs |= read_interface_addresses(source)
                self._value = frozenset(addrs)
            except OSError:
                self._value = None  # fail closed until a read succeeds
            self._read_at = now
            return self._value


#: the proxy's own namespace: where it dials from, so where a 0.0.0.0 server answers
HOST_ADDRESSES = LocalAddresses()
