"""The gateway's version in the initial metadata of every client-facing answer.

Clients (``openshell.client.versions``) read it from whatever call they make
first, so telling the user about a gateway left running after an upgrade costs
no round trip. Only ``openshell.v1.OpenShell`` and ``openshell.v1.Inference``
carry it; the supervisor link and ``grpc.health.v1`` are left as they are.
Extra initial metadata is invisible to clients that do not look (the published
SDK included).
"""

from __future__ import annotations

import inspect

import grpc

from openshell.client.versions import VERSION_METADATA_KEY

#: method-path prefixes whose answers carry the version
SERVICES = ("/openshell.v1.OpenShell/", "/openshell.v1.Inference/")


class VersionHeader(grpc.aio.ServerInterceptor):
    """Sends ``openshell-version: <version>`` as initial metadata before the handler runs.

    :ivar version: set by the gateway once its core exists; "" sends nothing.
    """

    def __init__(self, version: str = "") -> None:
        self.version = version

    async def intercept_service(self, continuation, handler_call_details):  # noqa: D102 - grpc API
        handler = await continuation(handler_call_details)
        if handler is None or not self.version or not handler_call_details.method.startswith(SERVICES):
            return handler
        metadata = ((VERSION_METADATA_KEY, self.version),)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(_wrap_unary(handler.unary_unary, metadata), handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(_wrap_stream(handler.unary_stream, metadata), handler.request_deserializer, handler.response_serializer)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(_wrap_unary(handler.stream_unary, metadata), handler.request_deserializer, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(_wrap_stream(handler.stream_stream, metadata), handler.request_deserializer, handler.response_serializer)


def _wrap_unary(behavior, metadata):
    async def wrapped(request, context):
        await context.send_initial_metadata(metadata)
        return await behavior(request, context)

    return wrapped


def _wrap_stream(behavior, metadata):
    # Sent before the first message, so a client learns the version even while
    # the stream waits (an interactive exec waiting for stdin).
    if inspect.isasyncgenfunction(behavior):

        async def gen(request, context):
            await context.send_initial_metadata(metadata)
            async for item in behavior(request, context):
                yield item

        return gen

    async def wrapped(request, context):  # a handler that answers with context.write()
        await context.send_initial_metadata(metadata)
        return await behavior(request, context)

    return wrapped
