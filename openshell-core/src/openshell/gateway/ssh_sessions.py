"""SSH session tokens for ``/connect/ssh``.

A token is 32 random bytes (URL-safe base64), bound to one sandbox id, valid
for ``ttl`` seconds and revocable. Only its SHA-256 is kept, so a dump of the
registry (or a log line) never reveals a usable token. The registry also counts
open tunnels: at most ``per_token`` per token and ``per_sandbox`` per sandbox.

Tokens live in the gateway's memory: a gateway restart revokes them all (a
client simply asks for a new one with ``CreateSshSession``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

DEFAULT_TTL = 3600.0  # seconds a token stays valid
MAX_TUNNELS_PER_TOKEN = 3
MAX_TUNNELS_PER_SANDBOX = 20
MAX_TOKENS = 10_000  # live tokens kept; beyond it the oldest expire early


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


@dataclass
class SshSession:
    """One issued token (its digest, never the token itself).

    :ivar sandbox_id: the sandbox the token opens.
    :ivar expires_at: unix seconds.
    """

    digest: bytes
    sandbox_id: str
    created_at: float
    expires_at: float
    revoked: bool = False
    tunnels: int = 0


class TokenInvalid(Exception):
    """The token is unknown, expired, revoked or bound to another sandbox (HTTP 401)."""


class TooManyTunnels(Exception):
    """A tunnel limit is reached (HTTP 429); the message names which."""


class SshSessions:
    """Thread-safe registry of tokens and open tunnels.

    :param ttl: seconds a new token is valid.
    :param per_token: tunnels one token may hold open at once.
    :param per_sandbox: tunnels one sandbox may have open at once (all tokens).
    :param clock: ``() -> unix seconds`` (tests pass their own).
    """

    def __init__(
        self, *, ttl: float = DEFAULT_TTL, per_token: int = MAX_TUNNELS_PER_TOKEN, per_sandbox: int = MAX_TUNNELS_PER_SANDBOX, clock=time.time
    ) -> None:
        self.ttl = ttl
        self.per_token = per_token
        self.per_sandbox = per_sandbox
        self._clock = clock
        self._sessions: dict[bytes, SshSession] = {}
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def create(self, sandbox_id: str) -> tuple[str, SshSession]:
        """Issue a token for ``sandbox_id``; return ``(token, session)``."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        session = SshSession(_digest(token), sandbox_id, now, now + self.ttl)
        with self._lock:
            self._prune(now)
            if len(self._sessions) >= MAX_TOKENS:
                oldest = min(self._sessions.values(), key=lambda s: s.created_at)
                del self._sessions[oldest.digest]
            self._sessions[session.digest] = session
        return token, session

    def revoke(self, token: str) -> bool:
        """Revoke ``token`` (open tunnels keep running; new ones are refused).

        :returns: False when the token is unknown (or already expired).
        """
        with self._lock:
            session = self._sessions.get(_digest(token))
            if session is None or session.revoked or session.expires_at <= self._clock():
                return False
            session.revoked = True
            return True

    def revoke_sandbox(self, sandbox_id: str) -> None:
        """Forget every token of a deleted sandbox."""
        with self._lock:
            for digest in [d for d, s in self._sessions.items() if s.sandbox_id == sandbox_id]:
                del self._sessions[digest]

    def check(self, sandbox_id: str, token: str) -> SshSession:
        """Return the live session of ``token`` for ``sandbox_id``.

        :raises TokenInvalid: unknown, expired, revoked, or for another sandbox.
        """
        digest = _digest(token)
        with self._lock:
            session = self._sessions.get(digest)
            now = self._clock()
            ok = (
                session is not None
                and hmac.compare_digest(session.sandbox_id.encode(), sandbox_id.encode())
                and not session.revoked
                and session.expires_at > now
            )
            if not ok:
                raise TokenInvalid("invalid, expired or revoked SSH session token")
            assert session is not None
            return session

    def acquire(self, sandbox_id: str, token: str) -> SshSession:
        """Check ``token`` and count one more open tunnel; pair with :meth:`release`.

        :raises TokenInvalid: as :meth:`check`.
        :raises TooManyTunnels: ``per_token`` or ``per_sandbox`` reached.
        """
        session = self.check(sandbox_id, token)
        with self._lock:
            if session.tunnels >= self.per_token:
                raise TooManyTunnels(f"this token already has {self.per_token} open tunnels; close one or create another session")
            if self._open.get(sandbox_id, 0) >= self.per_sandbox:
                raise TooManyTunnels(f"sandbox already has {self.per_sandbox} open tunnels; close some first")
            session.tunnels += 1
            self._open[sandbox_id] = self._open.get(sandbox_id, 0) + 1
        return session

    def release(self, session: SshSession) -> None:
        """Count one tunnel of ``session`` closed."""
        with self._lock:
            session.tunnels = max(session.tunnels - 1, 0)
            left = self._open.get(session.sandbox_id, 1) - 1
            if left > 0:
                self._open[session.sandbox_id] = left
            else:
                self._open.pop(session.sandbox_id, None)

    def _prune(self, now: float) -> None:
        for digest in [d for d, s in self._sessions.items() if s.expires_at <= now and s.tunnels == 0]:
            del self._sessions[digest]
