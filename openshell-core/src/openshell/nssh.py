"""NSSH1: the preface the gateway sends before SSH on a supervisor's SSH endpoint.

One line, ASCII, at most ``MAX_LINE`` bytes::

    NSSH1 <token> <unix-seconds> <nonce> <hex HMAC-SHA256(secret, "token|seconds|nonce")>\\n

answered ``OK\\n`` or ``ERR\\n``. The verifier rejects a timestamp more than
``MAX_SKEW`` seconds away from its clock and any nonce already seen inside that
window (replay). The secret is per sandbox, known to the gateway and the
supervisor only (never to the sandbox).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time

MAX_SKEW = 300  # seconds
MAX_LINE = 512  # bytes, including the newline
OK = b"OK\n"
ERR = b"ERR\n"

_FIELD = re.compile(rb"^[A-Za-z0-9_.:-]{1,128}$")


class PrefaceError(ValueError):
    """The preface is malformed, stale, replayed or its HMAC is wrong."""


def _mac(secret: bytes, token: str, seconds: int, nonce: str) -> str:
    return hmac.new(secret, f"{token}|{seconds}|{nonce}".encode(), hashlib.sha256).hexdigest()


def make_preface(secret: bytes, token: str, *, now: float | None = None, nonce: str | None = None) -> bytes:
    """Build one preface line for ``token`` signed with ``secret``.

    :param secret: the per-sandbox secret (bytes).
    :param token: an opaque session token (``[A-Za-z0-9_.:-]``, ≤128 chars).
    :returns: the line including the trailing newline.
    """
    seconds = int(time.time() if now is None else now)
    nonce = nonce or secrets.token_hex(16)
    return f"NSSH1 {token} {seconds} {nonce} {_mac(secret, token, seconds, nonce)}\n".encode()


class PrefaceVerifier:
    """Checks preface lines for one secret and remembers nonces for ``MAX_SKEW`` seconds.

    Thread-safe. ``verify`` raises ``PrefaceError`` with a reason; callers answer
    ``ERR`` without revealing it to the peer.
    """

    def __init__(self, secret: bytes, *, max_skew: int = MAX_SKEW, clock=time.time) -> None:
        self._secret = secret
        self._max_skew = max_skew
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def verify(self, line: bytes) -> str:
        """Validate one line (with or without the newline); return the token.

        :raises PrefaceError: malformed line, timestamp skew over the limit,
            replayed nonce, or HMAC mismatch.
        """
        if len(line) > MAX_LINE:
            raise PrefaceError("preface too long")
        parts = line.rstrip(b"\n").split(b" ")
        if len(parts) != 5 or parts[0] != b"NSSH1":
            raise PrefaceError("not an NSSH1 preface")
        _, token, seconds_b, nonce, mac = parts
        if not (_FIELD.match(token) and _FIELD.match(nonce) and seconds_b.isdigit() and re.fullmatch(rb"[0-9a-f]{64}", mac)):
            raise PrefaceError("malformed preface field")
        seconds = int(seconds_b)
        now = self._clock()
        if abs(now - seconds) > self._max_skew:
            raise PrefaceError("timestamp outside the allowed skew")
        expected = _mac(self._secret, token.decode(), seconds, nonce.decode())
        if not hmac.compare_digest(expected.encode(), mac):
            raise PrefaceError("bad HMAC")
        with self._lock:
            for n, t in list(self._seen.items()):
                if now - t > 2 * self._max_skew:
                    del self._seen[n]
            key = nonce.decode()
            if key in self._seen:
                raise PrefaceError("replayed nonce")
            self._seen[key] = now
        return token.decode()


#: SSH channel window and largest packet, bytes, for both ends of an OpenShell
#: session (supervisor server, CLI/gateway clients). paramiko's defaults (2 MiB,
#: 32 KiB) cost one Python round of packet work per 32 KiB; 128 KiB packets
#: moved a download's tar stream 85 -> 120-135 MiB/s here. The window bounds
#: what one channel buffers before its reader catches up.
WINDOW_SIZE = 4 << 20
MAX_PACKET = 128 << 10

#: AES-GCM first: on both ends of an OpenShell SSH session (paramiko) it moves
#: bulk data (uploads, downloads) ~1.5x faster per CPU second than paramiko's
#: default first choice, aes128-ctr with a separate HMAC (BENCHMARKS.md, "Transfers").
AEAD_FIRST = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def client_transport(sock):
    """A paramiko client ``Transport`` over ``sock`` (not started) with OpenShell's window,
    packet size and :data:`AEAD_FIRST` cipher order; the client's order decides the
    cipher, the others stay as fallbacks for a server without GCM."""
    import paramiko  # deferred: the supervisor imports this module at start, paramiko with its first SSH peer

    transport = paramiko.Transport(sock, default_window_size=WINDOW_SIZE, default_max_packet_size=MAX_PACKET)
    options = transport.get_security_options()
    options.ciphers = AEAD_FIRST + tuple(c for c in options.ciphers if c not in AEAD_FIRST)
    return transport
