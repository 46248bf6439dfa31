"""Policy RPCs of ``openshell.v1.OpenShell``: UpdateConfig, GetSandboxPolicyStatus, ListSandboxPolicies.

Names and field numbers are those of the published SDK (openshell==0.1.5);
the document travels as ``policy_yaml`` (field 1000) or as the SDK's
structured ``policy`` (:mod:`openshell.gateway.policy_proto`). Everything the
SDK's UpdateConfig can carry besides a sandbox policy (settings, global policies, merge
operations, annotations) is refused with INVALID_ARGUMENT rather than ignored:
ignoring part of a policy change would enforce something the user did not ask
for. :class:`PolicyRpcs` is mixed into ``OpenShellServicer``.
"""

from __future__ import annotations

import base64
import binascii

from openshell._proto import openshell_pb2
from openshell.gateway import core as gc
from openshell.gateway import store as st
from openshell.gateway.errors import PolicyRevisionNotFound
from openshell.gateway.policies import policy_hash
from openshell.gateway.policy_proto import policy_yaml_to_proto, set_structured_policy
from openshell.gateway.wire import refuse_unsupported, rpc_errors, timestamp, workspace_of

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

#: UpdateConfigRequest fields of the SDK we do not implement (number → name)
UPDATE_UNSUPPORTED = {
    3: "setting_key",
    4: "setting_value",
    5: "delete_setting",
    6: "global",
    7: "merge_operations",
    8: "expected_resource_version",
    9: "annotations",
}

STATUS_TO_PROTO = {
    st.PENDING: openshell_pb2.POLICY_STATUS_PENDING,
    st.LOADED: openshell_pb2.POLICY_STATUS_LOADED,
    st.FAILED: openshell_pb2.POLICY_STATUS_FAILED,
    "superseded": openshell_pb2.POLICY_STATUS_SUPERSEDED,
}


def revision_to_proto(rev: st.PolicyRevision, status: str | None = None) -> openshell_pb2.SandboxPolicyRevision:
    """Map a stored revision to the wire ``SandboxPolicyRevision`` (with its document).

    :param status: the status clients see (``PolicyState.status``); default the stored one.
    """
    msg = openshell_pb2.SandboxPolicyRevision(
        version=rev.revision,
        policy_hash=policy_hash(rev.yaml),
        status=STATUS_TO_PROTO.get(status or rev.status, openshell_pb2.POLICY_STATUS_UNSPECIFIED),
        load_error=rev.error,
        created_time=timestamp(rev.created_at),
        policy_yaml=rev.yaml,
        policy=policy_yaml_to_proto(rev.yaml),  # None (unset) when it no longer validates
    )
    if rev.status != st.PENDING:
        msg.loaded_time.CopyFrom(timestamp(rev.updated_at))
    return msg


def _page_token(last: int | None) -> str:
    return "" if last is None else base64.urlsafe_b64encode(f"rev:{last}".encode()).decode().rstrip("=")


def _after(token: str) -> int | None:
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "rev" or not number.isdigit():
            raise ValueError
        return int(number)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise gc.InvalidArgument("page_token", "not a token this gateway issued; start without one") from None


class PolicyRpcs:
    """The policy methods of the OpenShell servicer; expects ``self.core`` (a GatewayCore)."""

    core: gc.GatewayCore

    @rpc_errors
    async def UpdateConfig(self, request, context):
        """Store ``policy_yaml`` as the sandbox's next revision (POLICY.md §6)."""
        refuse_unsupported(request, UPDATE_UNSUPPORTED)
        if not request.sandbox:
            raise gc.InvalidArgument("sandbox", "name the sandbox whose policy to update (global policies are not supported)")
        if request.HasField("policy"):
            if request.policy_yaml:
                raise gc.InvalidArgument("policy", "set policy or policy_yaml, not both")
            rev = await set_structured_policy(self.core, request.sandbox, request.policy, workspace_of(request.workspace_scope))
            return openshell_pb2.UpdateConfigResponse(version=rev.revision, policy_hash=policy_hash(rev.yaml))
        if not request.policy_yaml.strip():
            raise gc.InvalidArgument("policy_yaml", "required: a POLICY.md document (see 'openshell policy default')")
        rev = await self.core.set_policy(request.sandbox, request.policy_yaml, workspace_of(request.workspace_scope))
        return openshell_pb2.UpdateConfigResponse(version=rev.revision, policy_hash=policy_hash(rev.yaml))

    @rpc_errors
    async def GetSandboxPolicyStatus(self, request, context):
        """Return one revision (``version`` 0: the active one) and the active version."""
        if getattr(request, "global"):
            raise gc.InvalidArgument("global", "global policies are not supported by this gateway; name a sandbox")
        state = await self.core.policy_state(request.sandbox, workspace_of(request.workspace_scope))
        rev = state.get(request.version)
        if rev is None:
            raise PolicyRevisionNotFound(request.sandbox, request.version)
        return openshell_pb2.GetSandboxPolicyStatusResponse(revision=revision_to_proto(rev, state.status(rev)), active_version=state.active)

    @rpc_errors
    async def ListSandboxPolicies(self, request, context):
        """Return the sandbox's revisions newest first, paged."""
        if getattr(request, "global"):
            raise gc.InvalidArgument("global", "global policies are not supported by this gateway; name a sandbox")
        after = _after(request.page_token)
        size = DEFAULT_PAGE_SIZE if request.page_size <= 0 else min(request.page_size, MAX_PAGE_SIZE)
        state = await self.core.policy_state(request.sandbox, workspace_of(request.workspace_scope))
        items, last = state.page(size, after)
        return openshell_pb2.ListSandboxPoliciesResponse(revisions=[revision_to_proto(r, state.status(r)) for r in items], next_page_token=_page_token(last))
