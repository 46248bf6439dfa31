"""A stand-in for remote model APIs, speaking their real wire formats.

OpenAI: ``GET /v1/models``, ``POST /v1/chat/completions`` (``stream: true`` →
``data: {chat.completion.chunk}`` events, then ``data: [DONE]``),
``POST /v1/completions``, ``POST /v1/embeddings``, ``POST /v1/responses``
(stream: ``response.created``, ``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta`` …,
``response.output_text.done``, ``response.content_part.done``,
``response.output_item.done``, ``response.completed``).

Anthropic: ``POST /v1/messages`` (stream: ``message_start``,
``content_block_start``, ``ping``, ``content_block_delta`` …,
``content_block_stop``, ``message_delta``, ``message_stop``),
``POST /v1/messages/count_tokens``, ``GET /v1/models``.

Every request is recorded (method, path, query, headers, JSON body) in
``server.requests``. The reply text is ``server.reply`` split into words, one
SSE event per word with ``server.chunk_delay`` seconds between them, so tests
can see streaming happen chunk by chunk.

In-process use::

    with ModelServer() as srv:           # 127.0.0.1:<free port>
        srv.base_url                      # "http://127.0.0.1:PORT/v1"

From a shell: ``python tests/fakes/model_server.py --port 8000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any


@dataclass
class ModelServer:
    """See the module docstring. ``host``/``port`` 0 picks a free port."""

    host: str = "127.0.0.1"
    port: int = 0
    reply: str = "Hello from the fake model"
    chunk_delay: float = 0.0
    models: tuple[str, ...] = ("fake-model-1", "fake-model-2")
    requests: list[Recorded] = field(default_factory=list)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> ModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def boot() -> None:
            app = web.Application(client_max_size=64 << 20)
            app.router.add_route("*", "/{tail:.*}", self._dispatch)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(boot())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("model server did not start")

    def stop(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # ------------------------------------------------------------------ dispatch

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("latin-1")
        self.requests.append(Recorded(request.method, request.path, request.query_string, dict(request.headers), body))
        path = request.path[3:] if request.path.startswith("/v1/") else request.path
        routes = {
            ("GET", "/models"): self._models,
            ("POST", "/chat/completions"): self._chat,
            ("POST", "/completions"): self._completions,
            ("POST", "/embeddings"): self._embeddings,
            ("POST", "/responses"): self._responses,
            ("POST", "/messages"): self._messages,
            ("POST", "/messages/count_tokens"): self._count_tokens,
        }
        handler = routes.get((request.method, path))
        if handler is None:
            return web.json_response({"error": {"message": f"no route {request.method} {request.path}", "type": "not_found"}}, status=404)
        return await handler(request, body if isinstance(body, dict) else {})

    # ------------------------------------------------------------------ helpers

    def _words(self) -> list[str]:
        words = self.reply.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    async def _sse(self, request: web.Request, events: list[tuple[str | None, Any]]) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for i, (event, data) in enumerate(events):
            if i and self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            payload = data if isinstance(data, str) else json.dumps(data)
            frame = (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"
            await resp.write(frame.encode())
        await resp.write_eof()
        return resp

    # ------------------------------------------------------------------ OpenAI

    async def _models(self, request: web.Request, body: dict) -> web.Response:
        now = int(time.time())
        if "anthropic-version" in request.headers:
            data = [{"type": "model", "id": m, "display_name": m, "created_at": "2026-01-01T00:00:00Z"} for m in self.models]
            return web.json_response({"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]})
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model", "created": now, "owned_by": "fake"} for m in self.models]})

    async def _chat(self, request: web.Request, body: dict) -> web.StreamResponse:
        cid, now, model = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time()), body.get("model", "")
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": now,
                    "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": len(self._words()), "total_tokens": 5 + len(self._words())},
                }
            )
        base = {"id": cid, "object": "chat.completion.chunk", "created": now, "model": model}
        events: list[tuple[str | None, Any]] = [
            (None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        ]
        events += [(None, {**base, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}) for w in self._words()]
        events.append((None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        events.append((None, "[DONE]"))
        return await self._sse(request, events)

    async def _completions(self, request: web.Request, body: dict) -> web.StreamResponse:
        cid, now, model = f"cmpl-{uuid.uuid4().hex[:12]}", int(time.time()), body.get("model", "")
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": cid,
                    "object": "text_completion",
                    "created": now,
                    "model": model,
                    "choices": [{"index": 0, "text": self.reply, "finish_reason": "stop", "logprobs": None}],
                }
            )
        events: list[tuple[str | None, Any]] = [
            (
                None,
                {
                    "id": cid,
                    "object": "text_completion",
                    "created": now,
                    "model": model,
                    "choices": [{"index": 0, "text": w, "finish_reason": None, "logprobs": None}],
                },
            )
            for w in self._words()
        ]
        events.append((None, "[DONE]"))
        return await self._sse(request, events)

    async def _embeddings(self, request: web.Request, body: dict) -> web.Response:
        inputs = body.get("input", "")
        items = inputs if isinstance(inputs, list) else [inputs]
        return web.json_response(
            {
                "object": "list",
                "model": body.get("model", ""),
                "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(items))],
                "usage": {"prompt_tokens": len(items), "total_tokens": len(items)},
            }
        )

    async def _responses(self, request: web.Request, body: dict) -> web.StreamResponse:
        rid, mid, model, now = f"resp_{uuid.uuid4().hex[:16]}", f"msg_{uuid.uuid4().hex[:16]}", body.get("model", ""), int(time.time())
        message = {
            "id": mid,
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": self.reply, "annotations": []}],
        }
        final = {
            "id": rid,
            "object": "response",
            "created_at": now,
            "status": "completed",
            "model": model,
            "output": [message],
            "usage": {"input_tokens": 5, "output_tokens": len(self._words()), "total_tokens": 5 + len(self._words())},
        }
        if not body.get("stream"):
            return web.json_response(final)
        pending = {**final, "status": "in_progress", "output": []}
        seq = iter(range(10_000))
        events: list[tuple[str | None, Any]] = [
            ("response.created", {"type": "response.created", "sequence_number": next(seq), "response": pending}),
            ("response.in_progress", {"type": "response.in_progress", "sequence_number": next(seq), "response": pending}),
            (
                "response.output_item.added",
                {
                    "type": "response.output_item.added",
                    "sequence_number": next(seq),
                    "output_index": 0,
                    "item": {**message, "status": "in_progress", "content": []},
                },
            ),
            (
                "response.content_part.added",
                {
                    "type": "response.content_part.added",
                    "sequence_number": next(seq),
                    "item_id": mid,
                    "output_index": 0,
                    "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []},
                },
            ),
        ]
        events += [
            (
                "response.output_text.delta",
                {"type": "response.output_text.delta", "sequence_number": next(seq), "item_id": mid, "output_index": 0, "content_index": 0, "delta": w},
            )
            for w in self._words()
        ]
        events += [
            (
                "response.output_text.done",
                {"type": "response.output_text.done", "sequence_number": next(seq), "item_id": mid, "output_index": 0, "content_index": 0, "text": self.reply},
            ),
            (
                "response.content_part.done",
                {
                    "type": "response.content_part.done",
                    "sequence_number": next(seq),
                    "item_id": mid,
                    "output_index": 0,
                    "content_index": 0,
                    "part": message["content"][0],
                },
            ),
            ("response.output_item.done", {"type": "response.output_item.done", "sequence_number": next(seq), "output_index": 0, "item": message}),
            ("response.completed", {"type": "response.completed", "sequence_number": next(seq), "response": final}),
        ]
        return await self._sse(request, events)

    # ------------------------------------------------------------------ Anthropic

    async def _messages(self, request: web.Request, body: dict) -> web.StreamResponse:
        mid, model = f"msg_{uuid.uuid4().hex[:20]}", body.get("model", "")
        usage = {"input_tokens": 5, "output_tokens": len(self._words())}
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": self.reply}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": usage,
                }
            )
        events: list[tuple[str | None, Any]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": mid,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": 5, "output_tokens": 1},
                    },
                },
            ),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
        ]
        events += [("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}) for w in self._words()]
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": len(self._words())}},
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return await self._sse(request, events)

    async def _count_tokens(self, request: web.Request, body: dict) -> web.Response:
        text = json.dumps(body.get("messages", []))
        return web.json_response({"input_tokens": max(1, len(text) // 4)})


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic model server (tests only).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--reply", default="Hello from the fake model")
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    args = parser.parse_args()
    srv = ModelServer(args.host, args.port, args.reply, args.chunk_delay)
    srv.start()
    print(f"serving {srv.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
