"""The SDK's structured ``openshell.sandbox.v1.SandboxPolicy`` to and from our policy model.

The published SDK sends a policy as a protobuf message; we keep POLICY.md
documents. :func:`document_from_proto` turns the message into the mapping
``parse_policy`` reads (refusing every field our model has no place for, so
nothing a user asked for is silently dropped); :func:`policy_to_proto` is the
inverse for answers. ``policy_to_proto(parse_policy(document_from_proto(m)))``
keeps every field we support (``tests``: round trip over the acceptance cases).

Field paths in errors use the message's names (``policy.filesystem.read_only[0]``),
prefixed with where the message sits in the request (``spec.policy``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import yaml
from google.protobuf import unknown_fields
from google.protobuf.message import Message

from openshell._proto import sandbox_pb2
from openshell.gateway.errors import InvalidArgument
from openshell.gateway.store import DEFAULT_WORKSPACE
from openshell.policy import FieldError, PolicyError, check_static_unchanged, dump_policy, parse_policy
from openshell.policy.model import Endpoint, HttpRule, NetworkRule, Policy

if TYPE_CHECKING:
    from openshell.gateway.core import GatewayCore
    from openshell.gateway.store import PolicyRevision

log = logging.getLogger("openshell.gateway")

#: fields of the SDK's messages our model has no place for (number → name); any
#: other unknown number is refused too, as ``field N``
_SDK_ONLY: dict[str, dict[int, str]] = {
    "SandboxPolicy": {6: "network_middlewares"},
    "NetworkEndpoint": {
        11: "allow_encoded_slash",
        12: "persisted_queries",
        13: "graphql_persisted_queries",
        14: "graphql_max_body_bytes",
        15: "path",
        16: "websocket_credential_rewrite",
        17: "request_body_credential_rewrite",
        18: "advisor_proposed",
        19: "credential_signing",
        20: "signing_service",
        21: "signing_region",
        22: "json_rpc_max_body_bytes",
        23: "mcp",
        24: "credential_binding",
        25: "allow_uninspected_credentials",
        26: "provider_credentialed",
        27: "token_grant_owner",
    },
    "L7Allow": {3: "command", 5: "operation_type", 6: "operation_name", 7: "fields", 9: "params"},
    "L7DenyRule": {3: "command", 5: "operation_type", 6: "operation_name", 7: "fields", 9: "params"},
}

_TLS = {sandbox_pb2.NETWORK_TLS_MODE_UNSPECIFIED: "", sandbox_pb2.NETWORK_TLS_MODE_SKIP: "skip"}
_ENFORCEMENT = {
    sandbox_pb2.NETWORK_ENFORCEMENT_MODE_UNSPECIFIED: "",
    sandbox_pb2.NETWORK_ENFORCEMENT_MODE_ENFORCE: "enforce",
    sandbox_pb2.NETWORK_ENFORCEMENT_MODE_AUDIT: "audit",
}
_ACCESS = {
    sandbox_pb2.NETWORK_ACCESS_PRESET_UNSPECIFIED: "",
    sandbox_pb2.NETWORK_ACCESS_PRESET_READ_ONLY: "read-only",
    sandbox_pb2.NETWORK_ACCESS_PRESET_READ_WRITE: "read-write",
    sandbox_pb2.NETWORK_ACCESS_PRESET_FULL: "full",
}

#: document key → message field name, for error paths (the rest is spelled the same)
_DOC_TO_PROTO = {"filesystem_policy": "filesystem"}


def _refuse_unknown(msg: Message, path: str) -> None:
    """Refuse ``msg`` when it carries a field we do not declare (an SDK-only setting)."""
    names = _SDK_ONLY.get(msg.DESCRIPTOR.name, {})
    for f in unknown_fields.UnknownFieldSet(msg):  # type: ignore[attr-defined]  # the stubs lack __iter__
        name = names.get(f.field_number, f"field {f.field_number}")
        raise InvalidArgument(f"{path}.{name}", "not supported by this gateway's policy model (POLICY.md); remove it")


def _enum(value: int, table: Mapping[Any, str], path: str, enum: Any) -> str:
    if value in table:
        return table[value]
    try:
        name = enum.Name(value)
    except ValueError:
        name = str(value)
    accepted = " | ".join(enum.Name(k) for k in table if k)
    raise InvalidArgument(path, f"{name} is not supported by this gateway; accepted: {accepted} (or unset)")


def _query_doc(query: Any, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, matcher in query.items():
        mpath = f"{path}.{key}"
        _refuse_unknown(matcher, mpath)
        if matcher.glob and matcher.any:
            raise InvalidArgument(mpath, "set glob or any, not both")
        out[key] = matcher.glob if matcher.glob else {"any": list(matcher.any)}
    return out


def _http_rule_doc(rule: sandbox_pb2.L7Allow | sandbox_pb2.L7DenyRule, path: str) -> dict[str, Any]:
    _refuse_unknown(rule, path)
    out: dict[str, Any] = {}
    if rule.method:
        out["method"] = rule.method
    if rule.path:
        out["path"] = rule.path
    if rule.query:
        out["query"] = _query_doc(rule.query, f"{path}.query")
    return out


def _endpoint_doc(ep: sandbox_pb2.NetworkEndpoint, path: str) -> dict[str, Any]:
    _refuse_unknown(ep, path)
    out: dict[str, Any] = {}
    if ep.host:
        out["host"] = ep.host
    if ep.port:
        out["port"] = ep.port
    if ep.ports:
        out["ports"] = list(ep.ports)
    if ep.protocol:
        out["protocol"] = ep.protocol
    for key, value, table, enum in (
        ("tls", ep.tls, _TLS, sandbox_pb2.NetworkTlsMode),
        ("enforcement", ep.enforcement, _ENFORCEMENT, sandbox_pb2.NetworkEnforcementMode),
        ("access", ep.access, _ACCESS, sandbox_pb2.NetworkAccessPreset),
    ):
        text = _enum(value, table, f"{path}.{key}", enum)
        if text:
            out[key] = text
    if ep.rules:
        rules = []
        for i, r in enumerate(ep.rules):
            _refuse_unknown(r, f"{path}.rules[{i}]")
            # An L7Rule without allow stays None: validation refuses it rather
            # than reading it as "allow everything".
            rules.append({"allow": _http_rule_doc(r.allow, f"{path}.rules[{i}].allow") if r.HasField("allow") else None})
        out["rules"] = rules
    if ep.deny_rules:
        out["deny_rules"] = [_http_rule_doc(r, f"{path}.deny_rules[{i}]") for i, r in enumerate(ep.deny_rules)]
    if ep.allowed_ips:
        out["allowed_ips"] = list(ep.allowed_ips)
    return out


def document_from_proto(msg: sandbox_pb2.SandboxPolicy, path: str = "policy") -> dict[str, Any]:
    """Return ``msg`` as a POLICY.md mapping (not validated yet).

    Unset sections stay absent (``parse_policy`` fills the defaults, a live
    update keeps the current static sections); ``version`` 0 (unset) means 1.

    :param path: where ``msg`` sits in the request, for error paths (``spec.policy``).
    :raises InvalidArgument: a field our model does not support (an SDK-only
        field, an enum value such as ``NETWORK_TLS_MODE_TERMINATE``), named by path.
    """
    _refuse_unknown(msg, path)
    doc: dict[str, Any] = {"version": msg.version or 1}
    if msg.HasField("filesystem"):
        fs = msg.filesystem
        _refuse_unknown(fs, f"{path}.filesystem")
        doc["filesystem_policy"] = {"include_workdir": fs.include_workdir, "read_only": list(fs.read_only), "read_write": list(fs.read_write)}
    if msg.HasField("landlock"):
        _refuse_unknown(msg.landlock, f"{path}.landlock")
        doc["landlock"] = {"compatibility": msg.landlock.compatibility} if msg.landlock.compatibility else {}
    if msg.HasField("process"):
        pr = msg.process
        _refuse_unknown(pr, f"{path}.process")
        doc["process"] = {k: v for k, v in (("run_as_user", pr.run_as_user), ("run_as_group", pr.run_as_group)) if v}
    if msg.network_policies:
        rules: dict[str, Any] = {}
        for key in sorted(msg.network_policies):
            rule = msg.network_policies[key]
            rpath = f"{path}.network_policies.{key}"
            _refuse_unknown(rule, rpath)
            rdoc: dict[str, Any] = {}
            if rule.name:
                rdoc["name"] = rule.name
            rdoc["endpoints"] = [_endpoint_doc(e, f"{rpath}.endpoints[{i}]") for i, e in enumerate(rule.endpoints)]
            binaries = []
            for i, b in enumerate(rule.binaries):
                _refuse_unknown(b, f"{rpath}.binaries[{i}]")
                binaries.append({"path": b.path})
            rdoc["binaries"] = binaries
            rules[key] = rdoc
        doc["network_policies"] = rules
    return doc


def proto_field(doc_field: str) -> str:
    """Translate a document path (``filesystem_policy.read_only[0]``) into the message's names."""
    head, dot, rest = doc_field.partition(".")
    return _DOC_TO_PROTO.get(head, head) + dot + rest


def invalid_policy(exc: PolicyError, path: str) -> InvalidArgument:
    """An InvalidArgument naming every problem of ``exc`` under ``path`` (``spec.policy``)."""
    return invalid_fields(exc.errors, path)


def invalid_fields(errors: Iterable[FieldError], path: str) -> InvalidArgument:
    """An InvalidArgument for document problems ``errors``; the first names the field."""
    violations = tuple((f"{path}.{proto_field(e.field)}" if e.field != "document" else path, e.message) for e in errors)
    return InvalidArgument(violations[0][0], violations[0][1], violations=violations)


def policy_yaml_from_proto(msg: sandbox_pb2.SandboxPolicy, path: str = "spec.policy") -> str:
    """Validate ``msg`` as a whole policy and return it as the POLICY.md document to store.

    :raises InvalidArgument: an unsupported field, or the policy is invalid
        (every problem is a field violation; the first names ``.field``).
    """
    doc = document_from_proto(msg, path)
    try:
        policy = parse_policy(doc)
    except PolicyError as exc:
        raise invalid_policy(exc, path) from None
    return dump_policy(policy)


def spec_policy_yaml(spec: Any) -> str:
    """The POLICY.md document a ``SandboxSpec`` asks for: ``policy_yaml``, or the
    structured ``policy`` converted (and validated); ``""`` when neither is set.

    :raises InvalidArgument: both are set, or the structured policy is refused
        (fields named ``spec.policy.…``).
    """
    if not spec.HasField("policy"):
        return str(spec.policy_yaml)
    if spec.policy_yaml:
        raise InvalidArgument("spec.policy", "set spec.policy or spec.policy_yaml, not both")
    return policy_yaml_from_proto(spec.policy, "spec.policy")


async def sandbox_policy(core: GatewayCore, name: str, workspace: str) -> sandbox_pb2.SandboxPolicy | None:
    """The sandbox's newest stored policy revision as the SDK's message (``spec.policy`` of
    answers); None when there is none that validates (see :func:`policy_yaml_to_proto`)."""
    state = await core.policy_state(name, workspace)
    if not state.revisions:  # pragma: no cover - a sandbox is stored with revision 1
        return None
    return policy_yaml_to_proto(state.revisions[-1].yaml)


async def set_structured_policy(core: GatewayCore, sandbox: str, msg: sandbox_pb2.SandboxPolicy, workspace: str | None) -> PolicyRevision:
    """Store ``msg`` as the sandbox's next policy revision (a live update, POLICY.md §6).

    Checked here first so that every problem is a field violation named with the
    message's names (``policy.filesystem.read_only``): an unset ``filesystem``
    keeps the current one, a removed path is refused (before any other problem of
    the paths), static sections must not change. ``core.set_policy`` checks again.

    :raises InvalidArgument: unsupported field, invalid policy, static section changed.
    :raises SandboxNotFound: no such sandbox.
    """
    doc = document_from_proto(msg, "policy")
    state = await core.policy_state(sandbox, workspace or DEFAULT_WORKSPACE)
    current = parse_policy(state.revisions[-1].yaml)
    try:
        check_static_unchanged(current, doc)
    except PolicyError as exc:
        raise invalid_policy(exc, "policy") from None
    return await core.set_policy(sandbox, yaml.safe_dump(doc, sort_keys=False), workspace or DEFAULT_WORKSPACE)


# --------------------------------------------------------------------------- model → message


def _http_rule_fields(rule: HttpRule) -> dict[str, Any]:
    out: dict[str, Any] = {"method": rule.method, "path": rule.path}
    if rule.query:
        out["query"] = {
            k: (sandbox_pb2.L7QueryMatcher(glob=m.globs[0]) if len(m.globs) == 1 else sandbox_pb2.L7QueryMatcher(any=list(m.globs))) for k, m in rule.query
        }
    return out


def _endpoint_to_proto(ep: Endpoint) -> sandbox_pb2.NetworkEndpoint:
    msg = sandbox_pb2.NetworkEndpoint(
        host=ep.host,
        protocol=ep.protocol,
        tls={v: k for k, v in _TLS.items()}[ep.tls],
        enforcement={v: k for k, v in _ENFORCEMENT.items()}[ep.enforcement],
        access={v: k for k, v in _ACCESS.items()}[ep.access],
        rules=[sandbox_pb2.L7Rule(allow=sandbox_pb2.L7Allow(**_http_rule_fields(r))) for r in ep.rules],
        deny_rules=[sandbox_pb2.L7DenyRule(**_http_rule_fields(r)) for r in ep.deny_rules],
        allowed_ips=list(ep.allowed_ips),
    )
    if len(ep.ports) == 1:
        msg.port = ep.ports[0]
    else:
        msg.ports.extend(ep.ports)
    return msg


def _rule_to_proto(rule: NetworkRule) -> sandbox_pb2.NetworkPolicyRule:
    return sandbox_pb2.NetworkPolicyRule(
        name=rule.name,
        endpoints=[_endpoint_to_proto(e) for e in rule.endpoints],
        binaries=[sandbox_pb2.NetworkBinary(path=b.path) for b in rule.binaries],
    )


def policy_to_proto(policy: Policy) -> sandbox_pb2.SandboxPolicy:
    """Return a validated policy as the SDK's message (every section set, paths normalised)."""
    return sandbox_pb2.SandboxPolicy(
        version=policy.version,
        filesystem=sandbox_pb2.FilesystemPolicy(
            include_workdir=policy.filesystem.include_workdir,
            read_only=list(policy.filesystem.read_only),
            read_write=list(policy.filesystem.read_write),
        ),
        landlock=sandbox_pb2.LandlockPolicy(compatibility=policy.landlock.compatibility),
        process=sandbox_pb2.ProcessPolicy(run_as_user=policy.process.run_as_user, run_as_group=policy.process.run_as_group),
        network_policies={r.key: _rule_to_proto(r) for r in policy.network},
    )


def policy_yaml_to_proto(document: str) -> sandbox_pb2.SandboxPolicy | None:
    """Return a stored POLICY.md document as the SDK's message.

    :returns: None when the document no longer validates (stored by an older
        gateway whose validation was looser): answers then leave the field unset
        rather than fail; ``policy_yaml`` still carries the document.
    """
    try:
        return policy_to_proto(parse_policy(document))
    except PolicyError as exc:
        log.warning("event=stored_policy_invalid error=%s", exc)
        return None
