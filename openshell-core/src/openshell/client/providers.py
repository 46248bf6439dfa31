"""Client calls for providers and inference routes (mixed into ``OpenShellClient``).

    with OpenShellClient.from_config() as client:
        client.create_provider("work", "anthropic", {"ANTHROPIC_API_KEY": key})
        client.list_providers()                    # [Provider(name, type, credential_keys, config)]
        client.set_inference_route("vllm", "llama-3", base_url="http://127.0.0.1:8000/v1")
        client.get_inference_route()               # InferenceRoute | None

Credential values go to the gateway and never come back: :class:`Provider`
holds credential names only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from openshell._proto import datamodel_pb2, inference_pb2, inference_pb2_grpc, openshell_pb2
from openshell.client.errors import ProviderNotFound  # noqa: F401 - importable from here as before

if TYPE_CHECKING:  # pragma: no cover
    from openshell._proto import openshell_pb2_grpc
    from openshell.client.errors import OpenShellError


@dataclass(frozen=True)
class Provider:
    """A provider as the gateway reports it (values redacted).

    :ivar credential_keys: names of its credential variables.
    """

    name: str
    type: str
    credential_keys: tuple[str, ...] = ()
    config: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    workspace: str = "default"

    def to_dict(self) -> dict:
        """Plain data for ``-o json|yaml`` (credentials as names only)."""
        return {
            "name": self.name,
            "type": self.type,
            "credentials": list(self.credential_keys),
            "config": dict(self.config),
            "labels": dict(self.labels),
            "workspace": self.workspace,
        }


@dataclass(frozen=True)
class InferenceRoute:
    """The workspace's inference route.

    :ivar base_url: empty means the backend's default.
    :ivar protocols: what the backend speaks (``openai``, ``anthropic``).
    """

    backend: str
    model: str
    base_url: str = ""
    provider: str = ""
    protocols: tuple[str, ...] = ()
    revision: int = 0

    def to_dict(self) -> dict:
        """Plain data for ``-o json|yaml``."""
        return {
            "backend": self.backend,
            "model": self.model,
            "base_url": self.base_url,
            "provider": self.provider,
            "protocols": list(self.protocols),
            "revision": self.revision,
        }


def provider_from_proto(p: datamodel_pb2.Provider) -> Provider:
    """Map the wire message (values are empty by contract) to :class:`Provider`."""
    return Provider(
        name=p.metadata.name,
        type=p.type,
        credential_keys=tuple(sorted(p.credentials)),
        config=dict(p.config),
        labels=dict(p.metadata.labels),
        workspace=p.metadata.workspace,
    )


class ProviderClient:
    """Provider and inference-route calls; needs ``_stub``, ``_channel``, ``_scope``, ``timeout``, ``_error``."""

    if TYPE_CHECKING:  # provided by OpenShellClient, which mixes this class in
        _stub: openshell_pb2_grpc.OpenShellStub
        _channel: grpc.Channel
        timeout: float

        @property
        def _scope(self) -> datamodel_pb2.WorkspaceSelector: ...
        def _error(self, exc: grpc.RpcError, sandbox: str | None = None) -> OpenShellError: ...

    @property
    def _inference_stub(self) -> inference_pb2_grpc.InferenceStub:
        stub = self.__dict__.get("_inference_stub_obj")
        if stub is None:
            stub = self.__dict__["_inference_stub_obj"] = inference_pb2_grpc.InferenceStub(self._channel)
        return stub

    def create_provider(
        self,
        name: str,
        type: str,
        credentials: Mapping[str, str],
        *,
        config: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Provider:
        """Create provider ``name`` of ``type`` with ``credentials`` (``{ENV_NAME: value}``).

        :raises SandboxExists: (ALREADY_EXISTS) the name is taken. :raises InvalidRequest: bad type/names/values.
        """
        msg = datamodel_pb2.Provider(
            metadata=datamodel_pb2.ObjectMeta(name=name, labels=dict(labels or {})),
            type=type,
            credentials=dict(credentials),
            config=dict(config or {}),
        )
        try:
            resp = self._stub.CreateProvider(
                openshell_pb2.CreateProviderRequest(provider=msg, workspace_scope=self._scope),
                timeout=self.timeout,
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return provider_from_proto(resp.provider)

    def get_provider(self, name: str) -> Provider:
        """Return provider ``name`` (values redacted). :raises ProviderNotFound:."""
        try:
            resp = self._stub.GetProvider(
                openshell_pb2.GetProviderRequest(name=name, workspace_scope=self._scope),
                timeout=self.timeout,
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return provider_from_proto(resp.provider)

    def list_providers(self) -> list[Provider]:
        """Return every provider of the client's workspace, by name."""
        try:
            resp = self._stub.ListProviders(
                openshell_pb2.ListProvidersRequest(workspace_scope=self._scope),
                timeout=self.timeout,
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return [provider_from_proto(p) for p in resp.providers]

    def update_provider(
        self,
        name: str,
        *,
        credentials: Mapping[str, str] | None = None,
        config: Mapping[str, str] | None = None,
        remove_credentials: Sequence[str] = (),
        remove_config: Sequence[str] = (),
    ) -> Provider:
        """Merge ``credentials``/``config`` into provider ``name`` and remove the named keys.

        Running sandboxes' inference routes pick the new credential up without a restart.
        :raises ProviderNotFound, InvalidRequest:
        """
        msg = datamodel_pb2.Provider(
            metadata=datamodel_pb2.ObjectMeta(name=name),
            credentials=dict(credentials or {}),
            config=dict(config or {}),
        )
        req = openshell_pb2.UpdateProviderRequest(
            provider=msg,
            workspace_scope=self._scope,
            remove_credentials=list(remove_credentials),
            remove_config=list(remove_config),
        )
        try:
            resp = self._stub.UpdateProvider(req, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return provider_from_proto(resp.provider)

    def delete_provider(self, name: str, *, allow_missing: bool = False) -> str:
        """Delete provider ``name``; returns ``COMPLETED`` or ``ALREADY_ABSENT``.

        :raises ProviderNotFound: missing and not ``allow_missing``.
        :raises ProviderInUse: a sandbox or the inference route still uses it.
        """
        req = openshell_pb2.DeleteProviderRequest(name=name, workspace_scope=self._scope, allow_missing=allow_missing)
        try:
            resp = self._stub.DeleteProvider(req, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return {openshell_pb2.DELETION_OUTCOME_ALREADY_ABSENT: "ALREADY_ABSENT"}.get(resp.outcome, "COMPLETED")

    def set_sandbox_provider(self, sandbox: str, provider: str, *, attach: bool = True) -> bool:
        """Attach (``attach=True``) or detach ``provider`` on sandbox ``sandbox``.

        Processes launched in the sandbox afterwards see the change (placeholders only);
        on a READY sandbox the call returns once its supervisor applied it.

        :returns: False when nothing changed (already attached / not attached).
        :raises SandboxNotFound, ProviderNotFound, InvalidRequest:
        """
        try:
            if attach:
                req = openshell_pb2.AttachSandboxProviderRequest(sandbox=sandbox, provider=provider, workspace_scope=self._scope)
                return self._stub.AttachSandboxProvider(req, timeout=max(self.timeout, 30)).attached
            dreq = openshell_pb2.DetachSandboxProviderRequest(sandbox=sandbox, provider=provider, workspace_scope=self._scope)
            return self._stub.DetachSandboxProvider(dreq, timeout=max(self.timeout, 30)).detached
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def sandbox_providers(self, sandbox: str) -> list[Provider]:
        """The providers attached to ``sandbox``, in attachment order. :raises SandboxNotFound:."""
        req = openshell_pb2.ListSandboxProvidersRequest(sandbox=sandbox, workspace_scope=self._scope)
        try:
            resp = self._stub.ListSandboxProviders(req, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return [provider_from_proto(p) for p in resp.providers]

    def set_inference_route(self, backend: str, model: str, *, base_url: str = "", provider: str = "") -> InferenceRoute:
        """Point ``inference.local`` of the workspace's sandboxes at ``backend``/``model``.

        :raises InvalidRequest: unknown backend, empty model, bad URL. :raises ProviderNotFound:.
        """
        route = inference_pb2.InferenceRoute(backend=backend, model=model, base_url=base_url, provider=provider)
        try:
            resp = self._inference_stub.SetInferenceRoute(
                inference_pb2.SetInferenceRouteRequest(route=route, workspace_scope=self._scope),
                timeout=self.timeout,
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return _route(resp)

    def get_inference_route(self) -> InferenceRoute | None:
        """Return the workspace's inference route, or None when none is set."""
        try:
            resp = self._inference_stub.GetInferenceRoute(
                inference_pb2.GetInferenceRouteRequest(workspace_scope=self._scope),
                timeout=self.timeout,
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return _route(resp) if resp.route.backend else None


def _route(resp: inference_pb2.InferenceRouteResponse) -> InferenceRoute:
    r = resp.route
    return InferenceRoute(r.backend, r.model, r.base_url, r.provider, tuple(r.protocols), resp.revision)
