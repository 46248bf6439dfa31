"""A minimal rtnetlink client: exactly the four requests the netns layer makes.

pyroute2 costs ~130 ms of import per supervisor start (its package imports
every netlink family it supports), which was a quarter of create-to-READY.
The netns layer needs only: create a veth pair whose peer goes to
another namespace, bring a link up, add an IPv4 address, and read a link's
index and operational state. Requests go over an ``AF_NETLINK`` socket created
in the calling *thread's* network namespace (``nsutil.in_netns``), each one
acknowledged by the kernel; a negative acknowledgement raises ``OSError`` with
the kernel's errno. Replies are bounded (one datagram of at most
:data:`RECV_SIZE` bytes each) and the socket times out after
:data:`TIMEOUT` seconds.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

TIMEOUT = 5.0  # seconds to wait for a kernel reply
RECV_SIZE = 65536  # bytes per reply datagram

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR = 16, 18, 20
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_IFNAME, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 16, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFF_UP = 0x1
#: ``IFLA_OPERSTATE`` values (RFC 2863), by name
OPER_STATES = {0: "UNKNOWN", 1: "NOTPRESENT", 2: "DOWN", 3: "LOWERLAYERDOWN", 4: "TESTING", 5: "DORMANT", 6: "UP"}

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")  # len, type


def _attr(kind: int, payload: bytes) -> bytes:
    """One ``rtattr`` with its payload, padded to 4 bytes."""
    raw = _RTATTR.pack(_RTATTR.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _name(ifname: str) -> bytes:
    raw = ifname.encode()
    if not raw or len(raw) >= 16 or b"\0" in raw or b"/" in raw:
        raise ValueError(f"invalid interface name {ifname!r}")
    return raw + b"\0"


def _attrs(data: bytes) -> dict[int, bytes]:
    """Parse a run of ``rtattr``s (strictly: a truncated attribute raises ``ValueError``)."""
    out: dict[int, bytes] = {}
    off = 0
    while off + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, off)
        if length < _RTATTR.size or off + length > len(data):
            raise ValueError("malformed netlink attribute")
        out[kind & 0x3FFF] = data[off + _RTATTR.size : off + length]
        off += (length + 3) & ~3
    return out


class Rtnl:
    """An rtnetlink socket in the calling thread's network namespace (a context manager).

    Create and use it in one thread, inside ``nsutil.in_netns(...)`` when the
    target namespace is not the thread's own.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        try:
            self.sock.settimeout(TIMEOUT)
            self.sock.bind((0, 0))
        except BaseException:
            self.sock.close()
            raise
        self.seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def _request(self, kind: int, flags: int, body: bytes) -> bytes:
        """Send one request and return the reply's body (after ``nlmsghdr``).

        With ``NLM_F_ACK`` the reply is the acknowledgement (empty bytes returned).
        :raises OSError: the kernel's negative acknowledgement, a timeout, or a reply
            that does not parse.
        """
        self.seq += 1
        seq = self.seq
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body)
        while True:
            data = self.sock.recv(RECV_SIZE)
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, mtype, _flags, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
                if length < _NLMSGHDR.size or off + length > len(data):
                    raise OSError(errno.EPROTO, "malformed netlink reply")
                payload = data[off + _NLMSGHDR.size : off + length]
                off += (length + 3) & ~3
                if mseq != seq:
                    continue  # a stale reply to an earlier request
                if mtype == NLMSG_ERROR:
                    if len(payload) < 4:
                        raise OSError(errno.EPROTO, "truncated netlink error")
                    (code,) = struct.unpack_from("=i", payload)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return b""
                return payload

    def add_veth(self, ifname: str, peer: str, peer_netns_fd: int) -> None:
        """Create veth ``ifname`` here with its peer ``peer`` in the namespace ``peer_netns_fd``.

        :raises OSError: e.g. ``EEXIST`` when ``ifname`` exists.
        """
        peer_info = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        peer_info += _attr(IFLA_IFNAME, _name(peer)) + _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        linkinfo = _attr(IFLA_INFO_KIND, b"veth\0") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info))
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(ifname)) + _attr(IFLA_LINKINFO, linkinfo)
        self._request(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def link(self, ifname: str) -> tuple[int, str]:
        """Return ``(index, operstate)`` of link ``ifname`` (operstate e.g. ``"UP"``).

        :raises OSError: ``ENODEV`` when there is no such link.
        """
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(ifname))
        reply = self._request(RTM_GETLINK, 0, body)
        if len(reply) < _IFINFOMSG.size:
            raise OSError(errno.EPROTO, "truncated link reply")
        _family, _type, index, _flags, _change = _IFINFOMSG.unpack_from(reply)
        try:
            attrs = _attrs(reply[_IFINFOMSG.size :])
        except ValueError as exc:
            raise OSError(errno.EPROTO, str(exc)) from None
        oper = attrs.get(IFLA_OPERSTATE, b"\0")
        return index, OPER_STATES.get(oper[0], "UNKNOWN")

    def set_up(self, index: int) -> None:
        """Set link ``index`` administratively up. :raises OSError: from the kernel."""
        self._request(RTM_NEWLINK, NLM_F_ACK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP))

    def add_ipv4(self, index: int, address: str, prefixlen: int) -> None:
        """Add ``address/prefixlen`` to link ``index`` (like ``ip addr add``).

        :raises OSError: from the kernel; ``ValueError`` for a bad address.
        """
        raw = socket.inet_pton(socket.AF_INET, address)
        body = _IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, 0, index) + _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw)
        self._request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)
