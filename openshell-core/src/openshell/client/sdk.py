"""Our Python client of the gateway (used by the CLI, the TUI and users).

    from openshell.client.sdk import OpenShellClient

    with OpenShellClient.from_config() as client:          # the active gateway
        sb = client.create_sandbox("demo", policy_yaml=open("policy.yaml").read())
        client.wait_ready("demo", timeout=60)
        for ev in client.exec("demo", ["echo", "hello"]):
            ...                                            # ExecEvent(kind, data, exit_code)
        for ev in client.watch_sandbox("demo"):            # WatchEvent(kind, ...): status|log|event|lagged
            ...
        client.delete_sandbox("demo")

Blocking (grpc's synchronous channel); every gRPC failure becomes one of the
exceptions of :mod:`openshell.client.errors`, whose message names the thing and the fix.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import grpc
import grpc.aio

from openshell._proto import datamodel_pb2, openshell_pb2, openshell_pb2_grpc
from openshell.client.config import GatewayConfigError, load_gateway_config
from openshell.client.errors import (  # noqa: F401 - re-exported: users import them from here
    GatewayUnavailable,
    InvalidRequest,
    NotFound,
    OpenShellError,
    PolicyFailed,
    PolicyRevisionNotFound,
    ProviderInUse,
    ProviderNotFound,
    SandboxExists,
    SandboxNotFound,
    SandboxNotReady,
    SandboxUnreachable,
    WaitTimeout,
    error_from_rpc,
)
from openshell.client.policies import PolicyClient, PolicyRevision  # noqa: F401 - re-exported
from openshell.client.providers import InferenceRoute, Provider, ProviderClient  # noqa: F401 - re-exported
from openshell.client.templates import SandboxTemplate, TemplateClient  # noqa: F401 - re-exported
from openshell.client.versions import VersionInterceptor
from openshell.client.watch import WatchEvent, watch_event_from_proto
from openshell.client.workspaces import Workspace, WorkspaceClient  # noqa: F401 - re-exported

DEFAULT_WORKSPACE = "default"
DEFAULT_TIMEOUT = 30.0  # seconds per unary call
EXEC_DEADLINE_SLACK = 30.0  # seconds beyond an exec's own timeout before the call gives up

_PHASES = {
    openshell_pb2.SANDBOX_PHASE_UNSPECIFIED: "UNKNOWN",
    openshell_pb2.SANDBOX_PHASE_PROVISIONING: "PROVISIONING",
    openshell_pb2.SANDBOX_PHASE_READY: "READY",
    openshell_pb2.SANDBOX_PHASE_ERROR: "ERROR",
    openshell_pb2.SANDBOX_PHASE_DELETING: "DELETING",
    openshell_pb2.SANDBOX_PHASE_UNKNOWN: "UNKNOWN",
    openshell_pb2.SANDBOX_PHASE_STOPPING: "STOPPING",
    openshell_pb2.SANDBOX_PHASE_STOPPED: "STOPPED",
    openshell_pb2.SANDBOX_PHASE_STARTING: "STARTING",
    openshell_pb2.SANDBOX_PHASE_COMPLETED: "COMPLETED",
}

_OUTCOMES = {
    openshell_pb2.DELETION_OUTCOME_COMPLETED: "COMPLETED",
    openshell_pb2.DELETION_OUTCOME_ACCEPTED: "ACCEPTED",
    openshell_pb2.DELETION_OUTCOME_ALREADY_ABSENT: "ALREADY_ABSENT",
}

# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Sandbox:
    """A sandbox as the gateway reports it.

    :ivar phase: PROVISIONING, READY, ERROR, DELETING, … ; ``reason`` says why for ERROR.
    :ivar policy_version: the policy revision the supervisor reported loaded (0: none yet).
    :ivar created_at: unix seconds.
    :ivar driver: the compute driver that made it (``local``, ``docker``); "" when the gateway did not record it.
    """

    id: str
    name: str
    workspace: str
    phase: str
    reason: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    extra_hosts: tuple[str, ...] = ()
    policy_version: int = 0
    created_at: float = 0.0
    driver: str = ""

    @property
    def created(self) -> str:
        """``created_at`` as ISO 8601 UTC (``2026-01-02T03:04:05Z``)."""
        if not self.created_at:
            return ""
        return datetime.fromtimestamp(self.created_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def to_dict(self) -> dict:
        """Plain data for ``-o json|yaml``."""
        return {
            "id": self.id,
            "name": self.name,
            "workspace": self.workspace,
            "phase": self.phase,
            "reason": self.reason,
            "labels": dict(self.labels),
            "command": list(self.command),
            "environment": dict(self.environment),
            "extra_hosts": list(self.extra_hosts),
            "policy_version": self.policy_version,
            "created_at": self.created_at,
            "driver": self.driver,
        }


@dataclass(frozen=True)
class SshSession:
    """A ``/connect/ssh`` token from ``CreateSshSession`` (keep ``token`` secret).

    :ivar sandbox_id: send as header ``x-sandbox-id``.
    :ivar token: send as header ``x-sandbox-token``.
    :ivar expires_at: unix seconds.
    """

    sandbox_id: str
    token: str
    expires_at: float
    gateway_host: str = ""
    gateway_port: int = 0

    def __repr__(self) -> str:  # never print the token
        return f"SshSession(sandbox_id={self.sandbox_id!r}, expires_at={self.expires_at})"


@dataclass(frozen=True)
class ExecEvent:
    """One exec event: ``kind`` is ``stdout``/``stderr`` (``data``) or ``exit`` (``exit_code``), exit last."""

    kind: str
    data: bytes = b""
    exit_code: int | None = None


def exec_event_from_proto(msg: openshell_pb2.ExecSandboxEvent) -> ExecEvent | None:
    """Map one wire exec event to :class:`ExecEvent`; None for a payload this client
    does not know (a newer gateway's)."""
    which = msg.WhichOneof("payload")
    if which == "stdout":
        return ExecEvent("stdout", bytes(msg.stdout.data))
    if which == "stderr":
        return ExecEvent("stderr", bytes(msg.stderr.data))
    if which == "exit":
        return ExecEvent("exit", exit_code=int(msg.exit.exit_code))
    return None


def sandbox_from_proto(sb: openshell_pb2.Sandbox) -> Sandbox:
    """Map a wire ``Sandbox`` to :class:`Sandbox`."""
    reason = next((c.message for c in sb.status.conditions if c.type == "Ready"), "")
    return Sandbox(
        id=sb.metadata.id,
        name=sb.metadata.name,
        workspace=sb.metadata.workspace,
        phase=_PHASES.get(sb.status.phase, "UNKNOWN"),
        reason=reason,
        labels=dict(sb.metadata.labels),
        command=tuple(sb.spec.command),
        environment=dict(sb.spec.environment),
        extra_hosts=tuple(sb.spec.extra_hosts),
        policy_version=sb.status.current_policy_version,
        created_at=sb.metadata.created_time.ToNanoseconds() / 1e9 if sb.metadata.HasField("created_time") else 0.0,
        driver=sb.status.compute_driver,
    )


def _read(value: str | Path | bytes) -> bytes:
    return value if isinstance(value, bytes) else Path(value).read_bytes()


def _target(endpoint: str) -> str:
    """``https://host:port`` or ``host:port`` → the gRPC target ``host:port``."""
    if "://" not in endpoint:
        return endpoint
    split = urlsplit(endpoint)
    host = split.hostname or "127.0.0.1"
    port = split.port or (443 if split.scheme == "https" else 80)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SandboxWatch(Iterator[WatchEvent]):
    """The iterator :meth:`OpenShellClient.watch_sandbox` returns: its
    :class:`~openshell.client.watch.WatchEvent` items, plus :meth:`cancel`.

    A cancelled watch ends quietly (``StopIteration``), like one whose sandbox was deleted.
    """

    def __init__(self, call: Any, error: Callable[[grpc.RpcError], OpenShellError], name: str, timeout: float | None) -> None:
        self._call = call
        self._error = error
        self._name = name
        self._timeout = timeout

    def __iter__(self) -> SandboxWatch:
        return self

    def __next__(self) -> WatchEvent:
        while True:
            try:
                msg = next(self._call)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise WaitTimeout(f"stopped watching sandbox '{self._name}' after {self._timeout:g}s") from None
                if exc.code() == grpc.StatusCode.CANCELLED:
                    raise StopIteration from None
                raise self._error(exc) from None
            item = watch_event_from_proto(msg, sandbox_from_proto)
            if item is not None:
                return item

    def cancel(self) -> None:
        """End the stream (thread-safe, idempotent): a blocked ``next`` returns ``StopIteration``."""
        self._call.cancel()

    def close(self) -> None:
        """Same as :meth:`cancel` (what ``for … break`` code calls on generators)."""
        self._call.cancel()

    def __del__(self) -> None:
        try:
            self._call.cancel()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown: nothing left to cancel
            pass


# --------------------------------------------------------------------------- client


class OpenShellClient(PolicyClient, ProviderClient, TemplateClient, WorkspaceClient):
    """A blocking client of one gateway over mTLS.

    :param endpoint: ``https://127.0.0.1:8080`` (or ``host:port``).
    :param ca, cert, key: PEM paths or bytes: the gateway's CA, the user's
        client certificate and its key.
    :param timeout: seconds per unary call.
    :param workspace: workspace every call addresses.
    :param gateway_name: used in error messages only.
    :param on_gateway_version: called once with the gateway's OpenShell version
        (``""`` when it does not say), read from the first answer of whatever
        call comes first (no extra round trip; a gateway older than the version
        header is asked once with ``Health``). Exceptions it raises are ignored.
        Afterwards :attr:`gateway_version` holds the same string.
    """

    def __init__(
        self,
        endpoint: str,
        ca: str | Path | bytes,
        cert: str | Path | bytes,
        key: str | Path | bytes,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        workspace: str = DEFAULT_WORKSPACE,
        gateway_name: str | None = None,
        on_gateway_version: Callable[[str], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.workspace = workspace
        self.gateway_name = gateway_name
        self._tls_material = (ca, cert, key)
        creds = grpc.ssl_channel_credentials(root_certificates=_read(ca), private_key=_read(key), certificate_chain=_read(cert))
        self._channel = grpc.secure_channel(_target(endpoint), creds)
        #: the gateway's version once an answer told it (see ``on_gateway_version``)
        self.gateway_version: str | None = None
        if on_gateway_version is not None:

            def seen(version: str) -> None:
                self.gateway_version = version
                on_gateway_version(version)

            self._channel = grpc.intercept_channel(self._channel, VersionInterceptor(seen, self.health))
        self._stub = openshell_pb2_grpc.OpenShellStub(self._channel)

    @classmethod
    def from_config(cls, gateway_name: str | None = None, **kwargs) -> OpenShellClient:
        """Build a client from the client files of DESIGN.md §4 (the active gateway by default).

        :raises GatewayUnavailable: nothing is configured for that gateway (the
            message says to run ``openshell gateway start``).
        """
        try:
            cfg = load_gateway_config(gateway_name)
        except GatewayConfigError as exc:
            raise GatewayUnavailable(str(exc)) from None
        return cls(cfg.endpoint, cfg.ca_path, cfg.cert_path, cfg.key_path, gateway_name=cfg.name, **kwargs)

    def close(self) -> None:
        """Close the channel (idempotent)."""
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    @property
    def _scope(self) -> datamodel_pb2.WorkspaceSelector:
        return datamodel_pb2.WorkspaceSelector(workspace=self.workspace)

    def aio_channel(self) -> grpc.aio.Channel:
        """A new asyncio gRPC channel to the same gateway with the same mTLS identity,
        for many concurrent streams on one event loop (``OpenShellStub(channel)``;
        :meth:`watch_request` builds the request, :meth:`error_of` maps failures).

        Call it on the thread running the event loop that will use it; close it there.
        """
        ca, cert, key = self._tls_material
        creds = grpc.ssl_channel_credentials(root_certificates=_read(ca), private_key=_read(key), certificate_chain=_read(cert))
        return grpc.aio.secure_channel(_target(self.endpoint), creds)

    def error_of(self, exc: grpc.RpcError, sandbox: str | None = None) -> OpenShellError:
        """The :class:`OpenShellError` for a failed call made on :meth:`aio_channel` (or this client's)."""
        return self._error(exc, sandbox)

    def _error(self, exc: grpc.RpcError, sandbox: str | None = None) -> OpenShellError:
        """The exception for a failed call (:func:`openshell.client.errors.error_from_rpc`)."""
        which = f"gateway '{self.gateway_name}'" if self.gateway_name else "the gateway"
        return error_from_rpc(exc, gateway=which, endpoint=self.endpoint, sandbox=sandbox)

    # ------------------------------------------------------------------ API

    def health(self) -> str:
        """Return the gateway's version. :raises GatewayUnavailable:."""
        try:
            return self._stub.Health(openshell_pb2.HealthRequest(), timeout=self.timeout).version
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def create_sandbox(
        self,
        name: str = "",
        policy_yaml: str | None = "",
        extra_hosts: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        command: Sequence[str] = (),
        providers: Sequence[str] = (),
        limits: Mapping[str, str] | None = None,
        workload_template: str = "",
        image: str = "",
    ) -> Sandbox:
        """Create a sandbox (PROVISIONING on return; see :meth:`wait_ready`).

        :param image: the sandbox image (container drivers, e.g. ``docker``); "" the
            driver's default. A gateway whose driver has no images refuses one.

        :param workload_template: a template of the workspace to start from (its
            image, environment, limits and policy; the arguments here win).

        :param limits: resource limits, e.g. ``{"cpu": "1.5", "memory": "512Mi"}``
            (sent as ``spec.template.resources.limits``); unset ones get the defaults.

        :param providers: names of providers whose credentials the sandbox gets
            (as ``openshell:resolve:env:NAME`` placeholders, never the values).

        :param name: "" lets the gateway pick a two-word name.
        :param policy_yaml: a POLICY.md document; "" or None for the default policy.
        :param extra_hosts: ``"name:ip"`` entries for the sandbox's /etc/hosts.
        :raises SandboxExists, InvalidRequest, GatewayUnavailable:
        """
        req = openshell_pb2.CreateSandboxRequest(
            workspace_scope=self._scope,
            name=name,
            labels=dict(labels or {}),
            spec=openshell_pb2.SandboxSpec(
                policy_yaml=policy_yaml or "",
                extra_hosts=list(extra_hosts or ()),
                environment=dict(env or {}),
                command=list(command),
                providers=list(providers),
            ),
            workload_template=workload_template,
        )
        if limits:
            req.spec.template.resources.update({"limits": dict(limits)})
        if image:
            req.spec.template.image = image
        try:
            return sandbox_from_proto(self._stub.CreateSandbox(req, timeout=self.timeout).sandbox)
        except grpc.RpcError as exc:
            raise self._error(exc, name or None) from None

    def get_sandbox(self, name: str) -> Sandbox:
        """Return sandbox ``name``. :raises SandboxNotFound:."""
        try:
            resp = self._stub.GetSandbox(openshell_pb2.GetSandboxRequest(name=name, workspace_scope=self._scope), timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self._error(exc, name) from None
        return sandbox_from_proto(resp.sandbox)

    def logs(self, name: str, *, lines: int = 200, min_level: str = "", since: float | None = None) -> list[dict]:
        """Log lines the sandbox's supervisor pushed, oldest first.

        :param lines: the last N (at most 10000).
        :param min_level: ``debug``/``info``/``warning``/``error``; empty = all.
        :param since: unix seconds; only lines at or after it.
        :returns: dicts with ``time`` (unix seconds), ``level``, ``target``, ``message``, ``fields``.
        :raises SandboxNotFound:
        """
        req = openshell_pb2.GetSandboxLogsRequest(sandbox=name, lines=lines, min_level=min_level, workspace_scope=self._scope)
        if since is not None:
            req.since_time.FromNanoseconds(int(since * 1e9))
        try:
            resp = self._stub.GetSandboxLogs(req, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self._error(exc, name) from None
        return [
            {"time": ln.event_time.ToNanoseconds() / 1e9, "level": ln.level, "target": ln.target, "message": ln.message, "fields": dict(ln.fields)}
            for ln in resp.logs
        ]

    def wait_ready(self, name: str, timeout: float = 120.0, *, poll: float = 0.25) -> Sandbox:
        """Wait until sandbox ``name`` is READY and return it.

        Follows the gateway's status stream (``WatchSandbox``): READY is seen the
        moment the gateway has it (polling saw it up to ``poll`` seconds late and
        cost the gateway a call per interval). ``poll`` is accepted for callers
        of earlier releases and unused.

        :raises SandboxNotReady: it went to ERROR or STOPPED (the message carries the reason).
        :raises WaitTimeout: not READY within ``timeout`` seconds.
        :raises SandboxNotFound: it was deleted meanwhile.
        """
        del poll
        sb: Sandbox | None = None
        watch = self.watch_sandbox(name, logs=False, events=False, stop_on_terminal=True, timeout=max(timeout, 0.001))
        try:
            for item in watch:
                if item.kind != "status" or item.sandbox is None:
                    continue  # a "lagged" notice: the current status follows
                sb = item.sandbox
                if sb.phase == "READY":
                    return sb
                if sb.phase in ("ERROR", "STOPPED"):
                    raise SandboxNotReady(f"sandbox '{name}' failed: {sb.reason or sb.phase}; see 'openshell sandbox get {name}'")
        except WaitTimeout:
            phase = sb.phase if sb is not None else "not READY"
            raise WaitTimeout(f"sandbox '{name}' is still {phase} after {timeout:g}s; see 'openshell sandbox get {name}'") from None
        finally:
            watch.close()
        raise SandboxNotFound(name, f"sandbox '{name}' was deleted while waiting for it to become READY")

    def list_sandboxes(self, labels: Mapping[str, str] | str | None = None, *, page_size: int = 100) -> list[Sandbox]:
        """Return every sandbox matching ``labels`` (all of them; pages are followed).

        :param labels: ``{"team": "a"}`` (all must match) or a selector string ``"team=a,!tmp"``.
        """
        selector = labels if isinstance(labels, str) else ",".join(f"{k}={v}" for k, v in (labels or {}).items())
        out: list[Sandbox] = []
        token = ""
        seen: set[str] = set()
        while True:
            req = openshell_pb2.ListSandboxesRequest(workspace_scope=self._scope, page_size=page_size, page_token=token, label_selector=selector)
            try:
                resp = self._stub.ListSandboxes(req, timeout=self.timeout)
            except grpc.RpcError as exc:
                raise self._error(exc) from None
            out += [sandbox_from_proto(s) for s in resp.sandboxes]
            token = resp.next_page_token
            if not token:
                return out
            if token in seen:  # a gateway bug must not loop forever
                raise OpenShellError("gateway repeated a list page token")
            seen.add(token)

    def delete_sandbox(self, name: str, *, allow_missing: bool = False, keep_workdir: bool = False) -> str:
        """Delete sandbox ``name``; return ``COMPLETED`` (or ``ALREADY_ABSENT`` with ``allow_missing``).

        :param keep_workdir: keep the sandbox's /sandbox directory on the host.
        :raises SandboxNotFound: it does not exist and not ``allow_missing``.
        """
        req = openshell_pb2.DeleteSandboxRequest(name=name, workspace_scope=self._scope, allow_missing=allow_missing, keep_workdir=keep_workdir)
        try:
            resp = self._stub.DeleteSandbox(req, timeout=max(self.timeout, 60.0))
        except grpc.RpcError as exc:
            raise self._error(exc, name) from None
        return _OUTCOMES.get(resp.outcome, f"UNKNOWN_{resp.outcome}")

    def stop_sandbox(self, name: str) -> Sandbox:
        """Stop sandbox ``name``: every process in it ends; its record, ``/sandbox``
        files and policy stay. Returns once it is STOPPED (a STOPPED one is returned as is).

        :raises SandboxNotFound:
        :raises SandboxNotReady: it is being deleted.
        :raises OpenShellError: the gateway's compute driver cannot stop sandboxes, or failed.
        """
        req = openshell_pb2.StopSandboxRequest(name=name, workspace_scope=self._scope)
        try:
            resp = self._stub.StopSandbox(req, timeout=max(self.timeout, 60.0))
        except grpc.RpcError as exc:
            raise self._error(exc, name) from None
        return sandbox_from_proto(resp.sandbox)

    def start_sandbox(self, name: str) -> Sandbox:
        """Run stopped sandbox ``name`` again (PROVISIONING on return; see :meth:`wait_ready`).

        A PROVISIONING or READY sandbox is returned as is.

        :raises SandboxNotFound:
        :raises SandboxNotReady: it is not STOPPED (an ERROR one: stop it first).
        :raises OpenShellError: the gateway's compute driver cannot start sandboxes, or failed.
        """
        req = openshell_pb2.StartSandboxRequest(name=name, workspace_scope=self._scope)
        try:
            resp = self._stub.StartSandbox(req, timeout=max(self.timeout, 60.0))
        except grpc.RpcError as exc:
            raise self._error(exc, name) from None
        return sandbox_from_proto(resp.sandbox)

    def watch_sandbox(
        self,
        name: str,
        *,
        workspace: str | None = None,
        status: bool = True,
        logs: bool = True,
        events: bool = True,
        log_tail: int = 0,
        event_tail: int = 0,
        min_level: str = "",
        stop_on_terminal: bool = False,
        timeout: float | None = None,
        log_since: float = 0.0,
    ) -> SandboxWatch:
        """Stream what happens to sandbox ``name`` as :class:`~openshell.client.watch.WatchEvent` items.

        Order: the current status (with ``status``), the last ``event_tail``
        platform events, the last ``log_tail`` log lines, then each status
        change, log line and platform event as it happens. The iterator ends
        when the sandbox is deleted, or (``stop_on_terminal``) after a status
        in ERROR or STOPPED; ``.cancel()`` (from any thread, e.g. while another
        one is blocked reading it) or ``.close()`` cancels the stream. A watcher that falls behind is not dropped silently: it gets
        a ``lagged`` item saying how many items it lost (then the status again).

        :param workspace: the workspace of the sandbox (default: the client's).
        :param status, logs, events: which kinds to stream (at least one).
        :param log_tail: log lines already held to send first (0..10000).
        :param event_tail: platform events already held to send first (the gateway keeps 100).
        :param min_level: only log lines at or above ``debug``/``info``/``warning``/``error``.
        :param timeout: seconds after which the stream ends with :class:`WaitTimeout`
            (None: no limit).
        :param log_since: unix seconds: the log tail holds only lines from then on (0: any age).
        :raises ValueError: none of ``status``, ``logs``, ``events``.
        :raises SandboxNotFound: no such sandbox (on the first ``next``).
        :raises WaitTimeout: ``timeout`` passed.
        :raises GatewayUnavailable: the connection to the gateway was lost.
        """
        req = self.watch_request(
            name,
            workspace=workspace,
            status=status,
            logs=logs,
            events=events,
            log_tail=log_tail,
            event_tail=event_tail,
            min_level=min_level,
            stop_on_terminal=stop_on_terminal,
            log_since=log_since,
        )
        return SandboxWatch(self._stub.WatchSandbox(req, timeout=timeout), lambda exc: self._error(exc, name), name, timeout)

    def watch_request(
        self,
        name: str,
        *,
        workspace: str | None = None,
        status: bool = True,
        logs: bool = True,
        events: bool = True,
        log_tail: int = 0,
        event_tail: int = 0,
        min_level: str = "",
        stop_on_terminal: bool = False,
        log_since: float = 0.0,
    ) -> openshell_pb2.WatchSandboxRequest:
        """The ``WatchSandboxRequest`` :meth:`watch_sandbox` sends (same parameters), for
        callers that run the stream themselves (e.g. many at once on :meth:`aio_channel`).

        :raises ValueError: none of ``status``, ``logs``, ``events``.
        """
        if not (status or logs or events):
            raise ValueError("watch at least one of status, logs, events")
        scope = datamodel_pb2.WorkspaceSelector(workspace=workspace) if workspace else self._scope
        req = openshell_pb2.WatchSandboxRequest(
            sandbox=name,
            workspace_scope=scope,
            follow_status=status,
            follow_logs=logs,
            follow_events=events,
            log_tail_lines=max(0, min(int(log_tail), 10_000)),
            event_tail=max(0, int(event_tail)),
            log_min_level=min_level,
            stop_on_terminal=stop_on_terminal,
        )
        if log_since > 0:
            req.since_time.FromNanoseconds(int(log_since * 1e9))
        return req

    def exec(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        stdin: bytes | Iterable[bytes] | None = None,
        timeout: float | None = None,
    ) -> Iterator[ExecEvent]:
        """Run ``argv`` in sandbox ``name``; yield stdout/stderr events and finally one exit event.

        :param stdin: bytes, or an iterable of chunks; the request carries stdin
            whole (ExecSandbox is server-streaming), so an iterable is read to
            its end before the command starts.
        :param timeout: seconds; the command is killed after it and exits 124.
        :raises SandboxNotFound, SandboxNotReady, SandboxUnreachable, GatewayUnavailable:
        """
        req = openshell_pb2.ExecSandboxRequest(
            workspace_scope=self._scope,
            sandbox=name,
            command=list(argv),
            environment=dict(env or {}),
            workdir=workdir or "",
            stdin=(stdin if isinstance(stdin, (bytes, bytearray)) else b"".join(stdin)) if stdin else b"",
        )
        if timeout:
            req.execution_timeout.FromNanoseconds(int(timeout * 1e9))
        deadline = timeout + EXEC_DEADLINE_SLACK if timeout else None
        got_exit = False
        try:
            for msg in self._stub.ExecSandbox(req, timeout=deadline):
                ev = exec_event_from_proto(msg)
                if ev is not None:
                    got_exit = got_exit or ev.kind == "exit"
                    yield ev
        except grpc.RpcError as exc:
            raise self._error(exc, name) from None
        if not got_exit:
            raise OpenShellError(f"exec in sandbox '{name}' ended without an exit status")

    def run(self, name: str, argv: Sequence[str], **kwargs) -> tuple[int, bytes, bytes]:
        """Run ``argv`` and collect it: ``(exit_code, stdout, stderr)``; same arguments as :meth:`exec`."""
        out, err, code = [], [], 255
        for ev in self.exec(name, argv, **kwargs):
            if ev.kind == "stdout":
                out.append(ev.data)
            elif ev.kind == "stderr":
                err.append(ev.data)
            else:
                code = int(ev.exit_code if ev.exit_code is not None else 255)
        return code, b"".join(out), b"".join(err)

    # ------------------------------------------------------------------ interactive access

    def create_ssh_session(self, name: str) -> SshSession:
        """Get a ``/connect/ssh`` token bound to sandbox ``name``.

        :raises SandboxNotFound, GatewayUnavailable:
        """
        req = openshell_pb2.CreateSshSessionRequest(sandbox=name, workspace_scope=self._scope)
        try:
            resp = self._stub.CreateSshSession(req, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self._error(exc, name) from None
        return SshSession(resp.sandbox_id, resp.token, resp.expiration_time.ToNanoseconds() / 1e9, resp.gateway_host, resp.gateway_port)

    def revoke_ssh_session(self, token: str, *, allow_missing: bool = False) -> str:
        """Revoke a token; return ``COMPLETED`` (or ``ALREADY_ABSENT`` with ``allow_missing``).

        :raises OpenShellError: unknown token without ``allow_missing`` (NOT_FOUND).
        """
        req = openshell_pb2.RevokeSshSessionRequest(token=token, allow_missing=allow_missing)
        try:
            resp = self._stub.RevokeSshSession(req, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return _OUTCOMES.get(resp.outcome, f"UNKNOWN_{resp.outcome}")

    def tunnel_ssl_context(self):
        """An ``ssl.SSLContext`` for the gateway's HTTP side (our client certificate, ALPN ``http/1.1``)."""
        ca, cert, key = self._tls_material
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(cadata=_read(ca).decode())
        if isinstance(cert, bytes) or isinstance(key, bytes):
            # load_cert_chain reads files only: a private temp dir holds bytes given to us.
            with tempfile.TemporaryDirectory() as tmp:
                paths = []
                for pem, fname in ((cert, "tls.crt"), (key, "tls.key")):
                    path = os.path.join(tmp, fname)
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(_read(pem))
                    paths.append(path)
                ctx.load_cert_chain(paths[0], paths[1])
        else:
            ctx.load_cert_chain(str(cert), str(key))
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def exec_interactive(
        self,
        name: str,
        argv: Sequence[str],
        inputs: Iterable[bytes | tuple[int, int]] = (),
        *,
        tty: bool = False,
        cols: int = 0,
        rows: int = 0,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[ExecEvent]:
        """``ExecSandboxInteractive``: stream stdin (and window resizes) while output streams back.

        :param inputs: stdin chunks and ``(cols, rows)`` resizes, consumed by a
            gRPC thread while events arrive; its end closes the command's stdin.
            The stream ends when the command ends, even if ``inputs`` never does.
        :param tty: run under a PTY of ``cols`` x ``rows`` (0: 80x24); output then arrives as stdout.
        :raises SandboxNotFound, SandboxNotReady, SandboxUnreachable, GatewayUnavailable:
        """
        start = openshell_pb2.ExecSandboxRequest(
            workspace_scope=self._scope,
            sandbox=name,
            command=list(argv),
            environment=dict(env or {}),
            workdir=workdir or "",
            tty=tty,
            cols=max(int(cols), 0),
            rows=max(int(rows), 0),
        )
        if timeout:
            start.execution_timeout.FromNanoseconds(int(timeout * 1e9))

        def requests():
            yield openshell_pb2.ExecSandboxInput(start=start)
            for item in inputs:
                if isinstance(item, tuple):
                    yield openshell_pb2.ExecSandboxInput(resize=openshell_pb2.ExecSandboxWindowResize(cols=item[0], rows=item[1]))
                elif item:
                    yield openshell_pb2.ExecSandboxInput(stdin=bytes(item))

        call = self._stub.ExecSandboxInteractive(requests(), timeout=timeout + EXEC_DEADLINE_SLACK if timeout else None)
        got_exit = False
        try:
            for msg in call:
                ev = exec_event_from_proto(msg)
                if ev is not None:
                    yield ev
                    if ev.kind == "exit":
                        got_exit = True
                        return
        except grpc.RpcError as exc:
            raise self._error(exc, name) from None
        finally:
            call.cancel()  # stops the request thread even when stdin never ends
        if not got_exit:
            raise OpenShellError(f"exec in sandbox '{name}' ended without an exit status")
