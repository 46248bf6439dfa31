"""Threads that follow one sandbox's ``WatchSandbox`` stream and post what
they read to a Textual widget (``post_message`` is thread-safe).

No polling: each thread blocks on the gateway's stream; :meth:`Follow.stop`
cancels it from the UI thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from openshell.client.policies import PolicyRevision
from openshell.client.sdk import GatewayUnavailable, OpenShellClient, OpenShellError, SandboxWatch
from openshell.client.watch import WatchEvent
from textual.message import Message
from textual.message_pump import MessagePump


@dataclass
class WatchItem(Message):
    """One item of sandbox ``name``'s stream; ``policy`` is its newest revision
    (read again on each status item, None otherwise)."""

    follow: Follow
    name: str
    event: WatchEvent
    policy: PolicyRevision | None = None


@dataclass
class WatchEnded(Message):
    """The stream of sandbox ``name`` ended: deleted (``error`` ""), or failed;
    ``lost`` says the gateway itself is unreachable."""

    follow: Follow
    name: str
    error: str = ""
    lost: bool = False


class Follow(threading.Thread):
    """Follow sandbox ``name`` and post :class:`WatchItem` / :class:`WatchEnded` to ``target``.

    :param logs_level: minimum log level ("" = all); None = no log lines.
    :param log_tail: log lines already held to send first.
    :param with_events: platform events too (the last 20 first).
    """

    def __init__(self, client: OpenShellClient, name: str, target: MessagePump, *, logs_level: str | None, log_tail: int, with_events: bool) -> None:
        super().__init__(name=f"follow-{name}", daemon=True)
        self.client = client
        self.sandbox = name
        self.target = target
        self.logs_level = logs_level
        self.log_tail = log_tail
        self.with_events = with_events
        self._watch: SandboxWatch | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    def _policy(self) -> PolicyRevision | None:
        try:
            revs = self.client.list_policies(self.sandbox)
        except OpenShellError:
            return None
        return revs[0] if revs else None

    def run(self) -> None:
        try:
            watch = self.client.watch_sandbox(
                self.sandbox,
                status=True,
                logs=self.logs_level is not None,
                events=self.with_events,
                log_tail=self.log_tail if self.logs_level is not None else 0,
                event_tail=20 if self.with_events else 0,
                min_level=self.logs_level or "",
            )
            with self._lock:
                if self._stopped.is_set():
                    watch.cancel()
                self._watch = watch
            for ev in watch:
                if self._stopped.is_set():
                    break
                policy = self._policy() if ev.kind == "status" else None
                self.target.post_message(WatchItem(self, self.sandbox, ev, policy))
        except GatewayUnavailable as exc:
            if not self._stopped.is_set():
                self.target.post_message(WatchEnded(self, self.sandbox, str(exc), lost=True))
            return
        except OpenShellError as exc:
            if not self._stopped.is_set():
                self.target.post_message(WatchEnded(self, self.sandbox, str(exc)))
            return
        if not self._stopped.is_set():
            self.target.post_message(WatchEnded(self, self.sandbox))

    def stop(self) -> None:
        """Cancel the stream (idempotent; the thread ends on its own, posting nothing more)."""
        with self._lock:
            self._stopped.set()
            if self._watch is not None:
                self._watch.cancel()
