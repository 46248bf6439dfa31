"""Who is on the other end of a gRPC call: the front's verified client certificates.

The TLS front terminates mTLS and relays the bytes of an ``h2`` connection to
the gRPC server's unix socket, so the server itself never sees a certificate.
The front binds each relay's socket to an autobound abstract address (unique
in the kernel while it is bound) and records the certificate's common name
under it; gRPC reports that address as the call's peer
(``unix-abstract:<name>``), which :func:`common_name_of` looks up.
"""

from __future__ import annotations

#: gRPC's spelling of an abstract unix socket peer
_PREFIX = "unix-abstract:"

_names: dict[str, str] = {}


def _key(address: bytes | str) -> str:
    if isinstance(address, bytes):
        address = address.decode("ascii", "replace")
    return _PREFIX + address.lstrip("\0")


def register(address: bytes | str, common_name: str) -> None:
    """Record the client certificate ``common_name`` of the relay bound to ``address`` (``getsockname()``)."""
    _names[_key(address)] = common_name


def forget(address: bytes | str) -> None:
    """Drop the record of a relay that closed (its address may be reused)."""
    _names.pop(_key(address), None)


def common_name_of(peer: str) -> str:
    """Return the common name of the client behind a gRPC ``context.peer()`` ('' when unknown)."""
    return _names.get(peer, "")
