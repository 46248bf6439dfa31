"""Which OpenShell version the gateway runs, learned without an extra round trip.

The gateway puts its version in the initial metadata of every answer of
``openshell.v1.OpenShell`` and ``openshell.v1.Inference`` (key
:data:`VERSION_METADATA_KEY`, see ``openshell.gateway.versions``). The client
interceptor here reads it from the first answer of a call that happens anyway;
a gateway too old to send it is asked once with ``Health`` instead.

Version comparison (:func:`compare`) lives here too, so the CLI and other
clients decide alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import grpc

#: gRPC metadata key (lower-case ASCII, as gRPC requires)
VERSION_METADATA_KEY = "openshell-version"

_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def installed_version() -> str:
    """Return the version of the installed ``openshell-core`` (what a freshly started gateway runs).

    :returns: e.g. ``"0.1.0"``; ``"0.0.0"`` when it is not installed as a distribution.
    """
    try:
        return version("openshell-core")
    except PackageNotFoundError:  # source checkout without metadata; same fallback as the gateway
        return "0.0.0"


def release(version: str) -> tuple[int, int, int] | None:
    """Return ``(major, minor, patch)`` of ``version`` (``"0.2.1rc1"`` → ``(0, 2, 1)``), or None when unparsable."""
    match = _RELEASE.match(version.strip().lstrip("v"))
    if match is None:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def compare(local: str, gateway: str) -> str | None:
    """Decide whether ``gateway`` is worth a warning against ``local``.

    Warn when major.minor differ, or when the gateway is older by any amount (a
    patch release can fix the gateway itself; restarting it is cheap). A gateway
    newer only by a patch is fine: the CLI speaks the same protocol.

    :returns: ``"older"`` (the gateway is older than ``local``), ``"newer"``,
        ``"different"`` (unequal and unparsable), or None (no warning).
    """
    if local == gateway:
        return None
    mine, theirs = release(local), release(gateway)
    if mine is None or theirs is None:
        return "different"
    if theirs < mine:
        return "older"
    if theirs[:2] != mine[:2]:
        return "newer"
    return None


class _StreamHook:
    """Wraps a response-streaming call; reports its metadata once the first message (or the end) arrived.

    Reading the metadata earlier could block: an old gateway sends its headers
    only with the first message, and an interactive command may wait for stdin
    the caller has not started sending yet.
    """

    def __init__(self, call: Any, note: Callable[[Any, bool], None]) -> None:
        self._call = call
        self._note: Callable[[Any, bool], None] | None = note

    def __iter__(self) -> _StreamHook:
        return self

    def __next__(self) -> Any:
        answered = False
        try:
            item = next(self._call)
            answered = True
            return item
        except StopIteration:
            answered = True
            raise
        finally:
            note, self._note = self._note, None
            if note is not None:
                note(self._call, answered)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class VersionInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Client interceptor calling ``seen(version)`` for the first answer that carries the gateway version.

    :param seen: called with the version string (``""`` if the gateway did not say),
        at most once per interceptor; exceptions it raises are swallowed.
    :param probe: called (at most once) when a successful answer has no version
        header, i.e. an older gateway; returns the version (e.g. from ``Health``) or "".
    """

    def __init__(self, seen: Callable[[str], None], probe: Callable[[], str]) -> None:
        self._seen = seen
        self._probe = probe
        self._done = False

    def _note(self, call: Any, answered: bool | None = None) -> None:
        """Look at a finished call (or one whose first message arrived).

        :param answered: whether the call succeeded so far; None: ask the (finished) call.
        """
        if self._done:
            return
        try:
            metadata = call.initial_metadata() or ()
            version = next((v for k, v in metadata if k == VERSION_METADATA_KEY), None)
            if version is None and not (call.code() == grpc.StatusCode.OK if answered is None else answered):
                # failed without the header (unreachable, or an old gateway's
                # error): probing now would only fail or cost a second round trip
                return
        except Exception:  # noqa: BLE001 - never break a call over a version check
            return
        self._done = True
        try:
            if version is None:
                version = self._probe()
            self._seen(version if isinstance(version, str) else version.decode())
        except Exception:  # noqa: BLE001 - a failed check must not fail the command
            pass

    def intercept_unary_unary(self, continuation, client_call_details, request):  # noqa: D102 - grpc API
        outcome = continuation(client_call_details, request)
        self._note(outcome)
        return outcome

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # noqa: D102
        outcome = continuation(client_call_details, request_iterator)
        self._note(outcome)
        return outcome

    def intercept_unary_stream(self, continuation, client_call_details, request):  # noqa: D102
        call = continuation(client_call_details, request)
        return call if self._done else _StreamHook(call, self._note)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # noqa: D102
        call = continuation(client_call_details, request_iterator)
        return call if self._done else _StreamHook(call, self._note)
