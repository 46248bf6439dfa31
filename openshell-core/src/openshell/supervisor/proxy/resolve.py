"""Name resolution for upstream dials (POLICY.md §2.5, DESIGN.md §7).

The proxy resolves names itself, so destination safety checks exactly the
addresses it will dial: the sandbox's hosts entries first (``extra_hosts`` /
``--add-host``; also how tests name their test hosts), then DNS. IP literals
resolve to themselves. Addresses keep the order they were found in and are
de-duplicated.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping, Sequence

from openshell.policy.hosts import ip_literal

DNS_TIMEOUT = 5.0  # seconds


class ResolveError(Exception):
    """The name has no usable address (not in hosts entries, DNS failed or timed out)."""


class Resolver:
    """Resolve a host name to IP address strings.

    :param hosts: sandbox hosts entries, ``{name: [ip, ...]}``; names are matched
        case-insensitively without a trailing dot.
    :param timeout: DNS deadline in seconds.
    """

    def __init__(self, hosts: Mapping[str, Sequence[str]] | None = None, *, timeout: float = DNS_TIMEOUT) -> None:
        self._hosts: dict[str, tuple[str, ...]] = {}
        for name, addrs in (hosts or {}).items():
            key = name.lower().rstrip(".")
            self._hosts[key] = tuple(str(ipaddress.ip_address(a)) for a in addrs)
        self._timeout = timeout

    async def resolve(self, host: str, port: int) -> list[str]:
        """Addresses for ``host`` (already lower-case, no brackets).

        :raises ResolveError: nothing found, DNS error or timeout.
        """
        literal = ip_literal(host)
        if literal is not None:
            return [str(literal)]
        entry = self._hosts.get(host)
        if entry:
            return list(entry)
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP),
                self._timeout,
            )
        except TimeoutError:
            raise ResolveError(f"DNS lookup of {host} timed out after {self._timeout:g}s") from None
        except OSError as exc:
            raise ResolveError(f"DNS lookup of {host} failed: {exc.strerror or exc}") from None
        seen: list[str] = []
        for family, _type, _proto, _canon, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                addr = str(ipaddress.ip_address(str(sockaddr[0]).partition("%")[0]))  # AF_INET/AF_INET6: the host is a str
                if addr not in seen:
                    seen.append(addr)
        if not seen:
            raise ResolveError(f"DNS lookup of {host} returned no addresses")
        return seen
