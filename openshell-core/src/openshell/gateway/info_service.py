"""Gateway information RPCs of ``openshell.v1.OpenShell``: GetGatewayInfo, GetCurrentUser.

Names and field numbers are those of the published SDK (openshell==0.1.5).
:class:`InfoRpcs` is mixed into ``OpenShellServicer``.
"""

from __future__ import annotations

from openshell._proto import openshell_pb2
from openshell.gateway import core as gc
from openshell.gateway import peers
from openshell.gateway.errors import Unauthenticated
from openshell.gateway.wire import rpc_errors

#: GetCurrentUserResponse.identity_provider of a client known by its certificate
IDENTITY_PROVIDER = "mtls"


class NoClientIdentity(Unauthenticated):
    """The call did not come through the mTLS front (no client certificate to name)."""

    reason = "NO_CLIENT_IDENTITY"

    def __init__(self) -> None:
        super().__init__("this call carries no client certificate identity; connect through the gateway's mTLS port")


class InfoRpcs:
    """The information methods of the OpenShell servicer; expects ``self.core`` (a GatewayCore)."""

    core: gc.GatewayCore

    @rpc_errors
    async def GetGatewayInfo(self, request, context):
        """Version, health and the compute driver (CPU and memory limits: cgroups; no GPUs)."""
        version = self.core.health()
        driver = self.core.driver_name
        caps = openshell_pb2.ComputeDriverCapabilities(
            driver_name=driver,
            driver_version=version,
            resource_capabilities=openshell_pb2.ResourceCapabilities(
                cpu=openshell_pb2.CpuResourceCapabilities(limit_supported=True),
                memory=openshell_pb2.MemoryResourceCapabilities(limit_supported=True),
                gpu=openshell_pb2.GpuResourceCapabilities(),
            ),
        )
        return openshell_pb2.GetGatewayInfoResponse(
            status=openshell_pb2.SERVICE_STATUS_HEALTHY,
            gateway_version=version,
            compute_drivers=[openshell_pb2.ComputeDriverInfo(name=driver, capabilities=caps)],
        )

    @rpc_errors
    async def GetCurrentUser(self, request, context):
        """The caller's verified client certificate: ``subject`` ``CN=<name>``, ``display_name`` the name.

        :raises NoClientIdentity: the call did not come through the mTLS front.
        """
        name = peers.common_name_of(context.peer() or "")
        if not name:
            raise NoClientIdentity()
        return openshell_pb2.GetCurrentUserResponse(subject=f"CN={name}", display_name=name, identity_provider=IDENTITY_PROVIDER)
