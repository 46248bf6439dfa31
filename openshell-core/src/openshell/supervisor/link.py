"""The supervisor's connection to the gateway (service ``openshell.v1.Supervisor``).

mTLS with the supervisor certificate the compute driver handed over, plus the
sandbox's id and secret in metadata on every call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Optional
from urllib.parse import urlparse

import grpc

from openshell._proto import openshell_pb2, supervisor_pb2, supervisor_pb2_grpc

log = logging.getLogger("openshell.supervisor")

CALL_TIMEOUT = 15.0  # seconds per unary call


@dataclass(frozen=True)
class SupervisorConfig:
    """What the compute driver writes to ``supervisor.json`` (mode 0600)."""

    sandbox_id: str
    name: str
    gateway_endpoint: str
    ca_cert: str
    client_cert: str
    client_key: str
    secret: str  # hex
    netns_index: int
    state_dir: str
    ssh_socket: str
    #: the spec's ``{"limits": {...}}`` (``openshell.resources``); absent in older files: defaults
    resources: dict = field(default_factory=dict)
    #: the sandbox runs in a container (the ``docker`` driver): its runtime enforces
    #: cpu/memory/pids (no cgroup of the supervisor's own) and ``/sandbox`` is a plain
    #: directory in the container (no ``disk`` limit)
    container: bool = False
    #: ``"kind:name"`` -> entry point value of the policy and isolation plugins, as
    #: the compute driver resolved them in the gateway (``loader.use_resolved_entry_points``);
    #: a plugin not in it is looked up among the installed entry points
    plugins: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> "SupervisorConfig":
        """Read the config file; raises ``OSError``/``ValueError``/``KeyError`` when bad."""
        data = json.loads(Path(path).read_text())
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data or k not in ("resources", "container", "plugins")})


class GatewayLink:
    """Async client of the Supervisor service for one sandbox."""

    def __init__(self, cfg: SupervisorConfig) -> None:
        self.cfg = cfg
        url = urlparse(cfg.gateway_endpoint)
        target = f"{url.hostname}:{url.port or 443}"
        creds = grpc.ssl_channel_credentials(
            root_certificates=Path(cfg.ca_cert).read_bytes(),
            private_key=Path(cfg.client_key).read_bytes(),
            certificate_chain=Path(cfg.client_cert).read_bytes(),
        )
        # gRPC's default reconnect backoff grows to minutes; after a gateway
        # restart the supervisor must be back (policy watch, log push) within ~1 s.
        options = [
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        self.channel = grpc.aio.secure_channel(target, creds, options=options)
        self.stub = supervisor_pb2_grpc.SupervisorStub(self.channel)
        self.metadata = (("x-sandbox-id", cfg.sandbox_id), ("x-sandbox-secret", cfg.secret))

    async def get_config(self, attempts: int = 20) -> supervisor_pb2.GetSandboxConfigResponse:
        """Fetch the sandbox config, retrying while the gateway is briefly unavailable.

        :raises grpc.aio.AioRpcError: after ``attempts`` failures or on a non-retryable code.
        """
        delay = 0.1
        for attempt in range(attempts):
            try:
                return await self.stub.GetSandboxConfig(supervisor_pb2.GetSandboxConfigRequest(), metadata=self.metadata, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == attempts - 1:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    async def report(
        self, *, phase: Optional[str] = None, reason: str = "", policy_revision: int = 0, policy_error: Optional[str] = None, pid: int = 0
    ) -> bool:
        """Report a phase (``READY``/``ERROR``) and/or a policy load result.

        Never raises; :returns: True when the gateway took the report, False when the call failed.
        """
        req = supervisor_pb2.ReportStatusRequest(reason=reason, supervisor_pid=pid)
        if phase:
            req.phase = getattr(openshell_pb2, f"SANDBOX_PHASE_{phase}")
        if policy_revision:
            req.policy.revision = policy_revision
            req.policy.status = supervisor_pb2.POLICY_LOAD_STATUS_FAILED if policy_error else supervisor_pb2.POLICY_LOAD_STATUS_LOADED
            req.policy.error = policy_error or ""
        try:
            # wait_for_ready: a start that fails while the channel is still connecting (a check
            # run during the first round trip) must still deliver its reason, not UNAVAILABLE
            await self.stub.ReportStatus(req, metadata=self.metadata, timeout=CALL_TIMEOUT, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            log.warning("event=report_failed phase=%s code=%s", phase, exc.code().name)
            return False
        return True

    async def watch_policy(self, after_revision: int) -> AsyncIterator[supervisor_pb2.PolicyRevision]:
        """Yield newer policy revisions; reconnects with backoff when the stream breaks."""
        delay = 0.5
        while True:
            try:
                call = self.stub.WatchPolicy(supervisor_pb2.WatchPolicyRequest(after_revision=after_revision), metadata=self.metadata)
                async for rev in call:
                    delay = 0.5
                    after_revision = max(after_revision, rev.revision)
                    yield rev
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return
                log.info("event=policy_watch_reconnect code=%s", exc.code().name)
            await asyncio.sleep(delay)
            # Capped at 1 s so a revision stored while the stream was down is
            # still picked up within 2 s of the gateway answering again.
            delay = min(delay * 2, 1.0)

    async def push_log_batch(self, batch) -> bool:
        """Send a ``LogBatch`` in one unary call; False on failure."""
        try:
            await self.stub.PushLogBatch(batch, metadata=self.metadata, timeout=CALL_TIMEOUT)
            return True
        except grpc.aio.AioRpcError as exc:
            log.debug("event=push_logs_failed code=%s", exc.code().name)
            return False

    async def close(self) -> None:
        await self.channel.close(None)  # no grace (grpc-stubs make the argument required)
