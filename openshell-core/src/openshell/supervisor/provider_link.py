"""The supervisor's provider and inference calls to the gateway.

Uses the ``GatewayLink``'s channel, stub and sandbox identity metadata:
``GetProviderEnvironment`` at start and on every change, ``WatchInferenceBundle``
for the sandbox's whole life (the route, its credentials and the attached
providers refresh without a restart), ``AckProviderEnvironment`` once a new
provider environment is in force.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc

from openshell._proto import supervisor_pb2
from openshell.inference.bundle import RouteBundle

if TYPE_CHECKING:  # pragma: no cover
    from openshell.supervisor.link import GatewayLink

log = logging.getLogger("openshell.supervisor")

CALL_TIMEOUT = 15.0


async def fetch_provider_environment(link: GatewayLink) -> supervisor_pb2.ProviderEnvironment:
    """The sandbox's provider environment (placeholders + values); empty when the
    gateway does not implement it.

    :raises grpc.aio.AioRpcError: any other failure (the sandbox must not start
        without the credentials it was created with).
    """
    try:
        # wait_for_ready: a start asks for this alongside its config, on a channel that
        # may still be connecting (or retrying a refused handshake under load); fail
        # only when it is not ready within the timeout, not on the first attempt.
        return await link.stub.GetProviderEnvironment(
            supervisor_pb2.GetProviderEnvironmentRequest(), metadata=link.metadata, timeout=CALL_TIMEOUT, wait_for_ready=True
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            return supervisor_pb2.ProviderEnvironment()
        raise


async def ack_provider_environment(link: GatewayLink, revision: int) -> None:
    """Tell the gateway that launches from now on see provider environment ``revision``.

    Best effort: a gateway without the call, or a failed call, only makes an
    attach/detach wait out its timeout.
    """
    try:
        await link.stub.AckProviderEnvironment(supervisor_pb2.AckProviderEnvironmentRequest(revision=revision), metadata=link.metadata, timeout=CALL_TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
            log.warning("event=provider_ack_failed code=%s", exc.code().name)


async def watch_inference(link: GatewayLink, after_revision: int = 0) -> AsyncIterator[RouteBundle]:
    """Yield each new inference bundle; reconnects with backoff (at most 2 s) when the stream breaks."""
    delay = 0.2
    while True:
        try:
            call = link.stub.WatchInferenceBundle(supervisor_pb2.WatchInferenceBundleRequest(after_revision=after_revision), metadata=link.metadata)
            async for msg in call:
                delay = 0.2
                after_revision = msg.revision
                yield RouteBundle.from_proto(msg)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAUTHENTICATED):
                log.warning("event=inference_watch_stopped code=%s", exc.code().name)
                return
            log.info("event=inference_watch_reconnect code=%s", exc.code().name)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
