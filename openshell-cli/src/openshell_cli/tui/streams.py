"""The UI's ``WatchSandbox`` streams, all on one thread: an asyncio loop with
one gRPC channel (:meth:`OpenShellClient.aio_channel`) carrying a stream per
followed sandbox as HTTP/2 streams of one connection. What a stream reads is
posted to a Textual widget (``post_message`` is thread-safe).

So 100 sandboxes cost 100 coroutines, not 100 threads. No polling: each
stream waits on the gateway; :meth:`Follow.stop` cancels it from the UI
thread. The one unary call a stream makes (the newest policy revision, on
each status item) runs in a small bounded pool so a burst of status items
cannot start a thread each.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from dataclasses import dataclass

import grpc
import grpc.aio
from openshell._proto import openshell_pb2_grpc
from openshell.client.policies import PolicyRevision
from openshell.client.sdk import GatewayUnavailable, OpenShellClient, OpenShellError, sandbox_from_proto
from openshell.client.watch import WatchEvent, watch_event_from_proto
from textual.message import Message
from textual.message_pump import MessagePump

POLICY_WORKERS = 4  # threads reading policy revisions for every stream together
CLOSE_WAIT = 5.0  # seconds close() waits for the loop to cancel the streams


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


class Streams:
    """Every stream of one client (gateway and workspace): one thread, one loop, one channel.

    Make one per client; :meth:`close` ends its streams, channel and thread.
    """

    def __init__(self, client: OpenShellClient) -> None:
        self.client = client
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tui-streams", daemon=True)
        self._pool = concurrent.futures.ThreadPoolExecutor(POLICY_WORKERS, thread_name_prefix="tui-policy")
        self._thread.start()
        self._stub = asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(CLOSE_WAIT)
        self._closed = False

    async def _open(self) -> openshell_pb2_grpc.OpenShellStub:
        self._channel = self.client.aio_channel()  # made on the loop's thread, as grpc.aio requires
        return openshell_pb2_grpc.OpenShellStub(self._channel)

    def follow(self, name: str, target: MessagePump, *, logs_level: str | None, log_tail: int, with_events: bool, log_since: float = 0.0) -> Follow:
        """Follow sandbox ``name`` and post :class:`WatchItem` / :class:`WatchEnded` to ``target``.

        :param logs_level: minimum log level ("" = all); None = no log lines.
        :param log_tail: log lines already held to send first.
        :param with_events: platform events too (the last 20 first).
        :param log_since: unix seconds: the log tail holds only lines from then on (0: any age).
        """
        f = Follow(self, name, target)
        req = self.client.watch_request(
            name,
            status=True,
            logs=logs_level is not None,
            events=with_events,
            log_tail=log_tail if logs_level is not None else 0,
            event_tail=20 if with_events else 0,
            min_level=logs_level or "",
            log_since=log_since,
        )
        if not self._closed:
            f._task = asyncio.run_coroutine_threadsafe(f._run(self._stub, req), self._loop)
        return f

    def policy(self, name: str) -> PolicyRevision | None:
        """The newest policy revision of ``name`` (None when it cannot be read); blocking."""
        try:
            revs = self.client.list_policies(name)
        except OpenShellError:
            return None
        return revs[0] if revs else None

    async def _policy(self, name: str) -> PolicyRevision | None:
        return await self._loop.run_in_executor(self._pool, self.policy, name)

    def close(self) -> None:
        """Cancel every stream, close the channel, end the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True

        async def shut() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._channel.close(None)

        try:
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(CLOSE_WAIT)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass  # a wedged loop: the daemon thread goes with the process
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CLOSE_WAIT)
        self._pool.shutdown(wait=False, cancel_futures=True)


class Follow:
    """One followed sandbox (make it with :meth:`Streams.follow`); :meth:`stop` cancels it."""

    def __init__(self, streams: Streams, name: str, target: MessagePump) -> None:
        self.streams = streams
        self.sandbox = name
        self.target = target
        self._stopped = threading.Event()
        self._task: concurrent.futures.Future[None] | None = None

    def _post(self, msg: Message) -> None:
        if not self._stopped.is_set():
            self.target.post_message(msg)

    async def _run(self, stub: openshell_pb2_grpc.OpenShellStub, req: object) -> None:
        call = stub.WatchSandbox(req)
        try:
            async for msg in call:
                if self._stopped.is_set():
                    return
                ev = watch_event_from_proto(msg, sandbox_from_proto)
                if ev is None:
                    continue
                policy = await self.streams._policy(self.sandbox) if ev.kind == "status" else None
                self._post(WatchItem(self, self.sandbox, ev, policy))
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.CANCELLED:
                return
            err = self.streams.client.error_of(exc, self.sandbox)
            self._post(WatchEnded(self, self.sandbox, str(err), lost=isinstance(err, GatewayUnavailable)))
            return
        except Exception as exc:  # noqa: BLE001 - e.g. an item that does not parse: end this stream, say why
            self._post(WatchEnded(self, self.sandbox, f"watching '{self.sandbox}' failed: {exc}"))
            return
        finally:
            call.cancel()
        self._post(WatchEnded(self, self.sandbox))

    def stop(self) -> None:
        """Cancel the stream (idempotent; posts nothing more)."""
        self._stopped.set()
        if self._task is not None:
            self._task.cancel()  # thread-safe: cancels the task on the loop
