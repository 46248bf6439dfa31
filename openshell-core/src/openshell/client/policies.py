"""Policy revisions in the Python client (POLICY.md §6): set, get, list, wait.

:class:`PolicyClient` is mixed into :class:`openshell.client.sdk.OpenShellClient`::

    with OpenShellClient.from_config() as client:
        rev = client.set_policy("demo", open("policy.yaml").read())   # stored, pending
        client.wait_policy("demo", rev.version, timeout=30)           # loaded, or raises
        client.get_policy("demo").policy_yaml                         # the active document
        [r.status for r in client.list_policies("demo")]              # newest first
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import grpc

from openshell._proto import openshell_pb2
from openshell.client.errors import PolicyFailed, WaitTimeout

if TYPE_CHECKING:  # pragma: no cover
    from openshell._proto import datamodel_pb2, openshell_pb2_grpc
    from openshell.client.errors import OpenShellError
    from openshell.client.sdk import Sandbox

DEFAULT_WAIT = 60.0  # seconds wait_policy waits for the supervisor by default

_STATUS = {
    openshell_pb2.POLICY_STATUS_PENDING: "pending",
    openshell_pb2.POLICY_STATUS_LOADED: "loaded",
    openshell_pb2.POLICY_STATUS_FAILED: "failed",
    openshell_pb2.POLICY_STATUS_SUPERSEDED: "superseded",
}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if seconds else ""


def short_time(seconds: float) -> str:
    """``MM-DD HH:MM:SS`` (UTC) for tables; "" for 0."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%m-%d %H:%M:%S") if seconds else ""


@dataclass(frozen=True)
class PolicyRevision:
    """One stored policy revision of a sandbox.

    :ivar version: 1, 2, … per sandbox (1 is the policy the sandbox was created with).
    :ivar status: ``pending`` (not yet reported by the supervisor), ``loaded``, ``failed``,
        or ``superseded`` (never loaded: the supervisor loaded a newer revision first).
    :ivar error: why the supervisor could not load it (``failed`` only).
    :ivar created_at: unix seconds when the gateway stored it.
    :ivar reported_at: unix seconds when the supervisor reported it (0 while pending).
    :ivar active: this is the revision in force (the newest loaded one).
    :ivar policy_yaml: the stored document (complete, static sections included).
    :ivar policy_hash: sha256 hex of ``policy_yaml``.
    """

    version: int
    status: str
    error: str = ""
    created_at: float = 0.0
    reported_at: float = 0.0
    active: bool = False
    policy_yaml: str = ""
    policy_hash: str = ""

    def to_dict(self, *, with_policy: bool = False) -> dict:
        """Plain data for ``-o json|yaml`` (times as ISO 8601 UTC)."""
        out = {
            "revision": self.version,
            "status": self.status,
            "active": self.active,
            "created": _iso(self.created_at),
            "reported": _iso(self.reported_at),
            "error": self.error,
            "policy_hash": self.policy_hash,
            "created_at": self.created_at,
            "reported_at": self.reported_at,
        }
        if with_policy:
            out["policy_yaml"] = self.policy_yaml
        return out


def revision_from_proto(msg: openshell_pb2.SandboxPolicyRevision, active_version: int = 0) -> PolicyRevision:
    """Map a wire ``SandboxPolicyRevision`` to :class:`PolicyRevision`."""
    return PolicyRevision(
        version=msg.version,
        status=_STATUS.get(msg.status, "unknown"),
        error=msg.load_error,
        created_at=msg.created_time.ToNanoseconds() / 1e9 if msg.HasField("created_time") else 0.0,
        reported_at=msg.loaded_time.ToNanoseconds() / 1e9 if msg.HasField("loaded_time") else 0.0,
        active=bool(active_version) and msg.version == active_version,
        policy_yaml=msg.policy_yaml,
        policy_hash=msg.policy_hash,
    )


class PolicyClient:
    """Policy methods of the client; needs ``_stub``, ``_scope``, ``_error``, ``timeout``."""

    if TYPE_CHECKING:  # provided by OpenShellClient, which mixes this class in
        _stub: openshell_pb2_grpc.OpenShellStub
        timeout: float

        @property
        def _scope(self) -> datamodel_pb2.WorkspaceSelector: ...
        def _error(self, exc: grpc.RpcError, sandbox: str | None = None) -> OpenShellError: ...
        def get_sandbox(self, name: str) -> Sandbox: ...

    def set_policy(self, name: str, policy_yaml: str) -> PolicyRevision:
        """Validate and store ``policy_yaml`` as sandbox ``name``'s next revision.

        :returns: the stored revision (complete document; status ``pending`` until
            the supervisor reports it, see :meth:`wait_policy`).

        Static sections (``filesystem_policy``, ``landlock``, ``process``) may be
        omitted (kept) but not changed.

        :raises InvalidRequest: invalid, or a static section changed (``field`` names it).
        :raises SandboxNotFound, GatewayUnavailable:
        """
        req = openshell_pb2.UpdateConfigRequest(sandbox=name, workspace_scope=self._scope, policy_yaml=policy_yaml)
        try:
            resp = self._stub.UpdateConfig(req, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self._error(exc, name) from None
        return self.get_policy(name, resp.version)

    def get_policy(self, name: str, version: int = 0) -> PolicyRevision:
        """Return revision ``version`` of sandbox ``name``; 0: the active one.

        :raises SandboxNotFound: no such sandbox. :raises PolicyRevisionNotFound: no such revision.
        """
        req = openshell_pb2.GetSandboxPolicyStatusRequest(sandbox=name, version=version, workspace_scope=self._scope)
        try:
            resp = self._stub.GetSandboxPolicyStatus(req, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self._error(exc, name) from None
        return revision_from_proto(resp.revision, resp.active_version)

    def list_policies(self, name: str, *, page_size: int = 100) -> list[PolicyRevision]:
        """Return every revision of sandbox ``name``, newest first (pages are followed)."""
        out: list[PolicyRevision] = []
        token, seen = "", set()
        while True:
            req = openshell_pb2.ListSandboxPoliciesRequest(sandbox=name, workspace_scope=self._scope, page_size=page_size, page_token=token)
            try:
                resp = self._stub.ListSandboxPolicies(req, timeout=self.timeout)
            except grpc.RpcError as exc:
                raise self._error(exc, name) from None
            out += [revision_from_proto(r) for r in resp.revisions]
            token = resp.next_page_token
            if not token:
                break
            if token in seen:
                raise RuntimeError("gateway repeated a policy list page token")
            seen.add(token)
        loaded = [r.version for r in out if r.status == "loaded"]
        active = max(loaded, default=0)
        return [dataclasses.replace(r, active=r.version == active) for r in out]

    def wait_policy(self, name: str, version: int, timeout: float = DEFAULT_WAIT, *, poll: float = 0.2) -> PolicyRevision:
        """Wait until the supervisor reports revision ``version`` of sandbox ``name``.

        :returns: the revision, status ``loaded``.
        :raises PolicyFailed: it failed to load (the message carries the supervisor's reason),
            was superseded, or the sandbox is not running.
        :raises WaitTimeout: still pending after ``timeout`` seconds (e.g. the sandbox is not running).
        :raises SandboxNotFound: the sandbox was deleted meanwhile.
        """
        deadline = time.monotonic() + timeout
        polls = 0
        while True:
            rev = self.get_policy(name, version)
            if rev.status == "loaded":
                return rev
            polls += 1
            if rev.status == "pending" and polls % 5 == 0:
                # No supervisor will ever report it if the sandbox is not running: say so now.
                sb = self.get_sandbox(name)
                if sb.phase in ("ERROR", "STOPPED", "DELETING"):
                    raise PolicyFailed(
                        f"policy revision {version} of sandbox '{name}' cannot load: the sandbox is {sb.phase}"
                        f"{f' ({sb.reason})' if sb.reason else ''}; see 'openshell sandbox get {name}'",
                        rev,
                    )
            if rev.status == "superseded":
                active = self.get_policy(name).version
                raise PolicyFailed(
                    f"policy revision {version} of sandbox '{name}' was superseded: the supervisor loaded the newer "
                    f"revision {active} first; see 'openshell policy get {name}'",
                    rev,
                )
            if rev.status == "failed":
                raise PolicyFailed(
                    f"policy revision {version} of sandbox '{name}' failed to load: {rev.error}; "
                    f"revision {self.get_policy(name).version} stays in force (see 'openshell policy list {name}')",
                    rev,
                )
            if time.monotonic() >= deadline:
                sb = self.get_sandbox(name)
                why = f" (sandbox is {sb.phase})" if sb.phase != "READY" else ""
                raise WaitTimeout(
                    f"policy revision {version} of sandbox '{name}' is still pending after {timeout:g}s{why}; "
                    f"check 'openshell policy list {name}' and 'openshell sandbox get {name}'"
                )
            time.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))
