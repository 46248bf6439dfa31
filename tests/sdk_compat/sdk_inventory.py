"""What the published SDK knows: every RPC of its service descriptor and the public
client methods that reach each one.

Runs with the SDK venv's python (``openshell==0.1.5`` importable; nothing of ours),
standard library only besides the wheel:

    python sdk_inventory.py            # JSON: {"rpcs": [...], "methods": {...}}
    python sdk_inventory.py --markdown # rows for the table in docs/sdk-compat.md
    python sdk_inventory.py --probe    # JSON: RPC -> status code name of an empty request

``--probe`` dials the active gateway as the SDK does (``$OPENSHELL_GATEWAY``,
``$XDG_CONFIG_HOME``) and calls every RPC through the wheel's generated stub with
an empty request message (a stream: one empty message); see :func:`probe`.

``rpcs`` lists ``{"name", "kind"}`` in the descriptor's order, ``kind`` one of
``unary``, ``server-stream``, ``client-stream``, ``bidi``. ``methods`` maps an RPC
name to the sorted public methods (``Class.method``) that call it, directly or
through other methods of the SDK (read from the wheel's source with ``ast``: calls
on ``self``, ``self._client``/``client`` (a ``SandboxClient``) and
``self._session`` (a ``SandboxSession``)). ``Sandbox.__enter__``/``__exit__`` are
the ``with Sandbox(...)`` block.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path

# The classes of the SDK's public API (``openshell.__all__``) that talk to the gateway.
PUBLIC_CLASSES = ("SandboxClient", "SandboxSession", "Sandbox", "SandboxTemplateClient", "WorkspaceClient", "ProviderClient")
# How the SDK's code names instances of other classes inside a method.
RECEIVERS = {"_client": "SandboxClient", "client": "SandboxClient", "_session": "SandboxSession"}


def rpcs() -> list[dict[str, str]]:
    """Every method of ``openshell.v1.OpenShell`` in the wheel's descriptor."""
    from openshell._proto import openshell_pb2

    service = openshell_pb2.DESCRIPTOR.services_by_name["OpenShell"]
    kinds = {(False, False): "unary", (False, True): "server-stream", (True, False): "client-stream", (True, True): "bidi"}
    return [{"name": m.name, "kind": kinds[(m.client_streaming, m.server_streaming)]} for m in service.methods]


def _calls(fn: ast.AST, cls: str) -> tuple[set[str], set[str]]:
    """(RPC names called on ``self._stub``, ``Class.method`` names called) in ``fn``."""
    stub, methods = set(), set()
    for node in ast.walk(fn):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        target, name = node.func.value, node.func.attr
        if isinstance(target, ast.Attribute) and target.attr == "_stub" and isinstance(target.value, ast.Name) and target.value.id == "self":
            stub.add(name)
        elif isinstance(target, ast.Name) and target.id == "self":
            methods.add(f"{cls}.{name}")
        elif isinstance(target, ast.Name) and target.id in RECEIVERS:
            methods.add(f"{RECEIVERS[target.id]}.{name}")
        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self" and target.attr in RECEIVERS:
            methods.add(f"{RECEIVERS[target.attr]}.{name}")
    return stub, methods


def methods() -> dict[str, list[str]]:
    """RPC name -> sorted public ``Class.method`` names of the SDK that call it."""
    package = Path(importlib.util.find_spec("openshell").origin).parent  # type: ignore[arg-type,union-attr]
    direct: dict[str, set[str]] = {}
    edges: dict[str, set[str]] = {}
    for source in ("sandbox.py", "providers.py"):
        tree = ast.parse((package / source).read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name in PUBLIC_CLASSES:
                for fn in node.body:
                    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        key = f"{node.name}.{fn.name}"
                        direct[key], edges[key] = _calls(fn, node.name)

    def reach(key: str, seen: set[str]) -> set[str]:
        if key in seen or key not in direct:
            return set()
        seen.add(key)
        out = set(direct[key])
        for callee in edges[key]:
            out |= reach(callee, seen)
        return out

    out: dict[str, set[str]] = {}
    for key in direct:
        name = key.split(".", 1)[1]
        if name.startswith("_") and name not in ("__enter__", "__exit__"):
            continue
        for rpc in reach(key, set()):
            out.setdefault(rpc, set()).add(key)
    return {rpc: sorted(keys) for rpc, keys in out.items()}


def _first(call: object) -> None:
    """Read one message of a response stream (none is fine), then cancel it."""
    try:
        next(iter(call))  # type: ignore[call-overload]
    except StopIteration:
        pass
    finally:
        call.cancel()  # type: ignore[attr-defined]


def probe(timeout: float = 20.0) -> dict:
    """``{"codes": {RPC name: "OK" or the gRPC status code name its empty request
    got}, "created": name of the sandbox the empty CreateSandbox made}``.

    Only ``UNIMPLEMENTED`` means the gateway does not serve the call; anything else
    (``INVALID_ARGUMENT``, ``NOT_FOUND``, ``OK``, even ``DEADLINE_EXCEEDED``) means
    a handler answered. An empty ``CreateSandbox`` creates a sandbox in workspace
    ``default`` (a missing scope means ``default``); it is deleted again here.
    """
    import grpc
    from google.protobuf import message_factory
    from openshell import SandboxClient
    from openshell._proto import datamodel_pb2, openshell_pb2, openshell_pb2_grpc

    service = openshell_pb2.DESCRIPTOR.services_by_name["OpenShell"]
    out: dict[str, str] = {}
    created = ""
    with SandboxClient.from_active_cluster(timeout=timeout) as client:
        # The SDK's own channel (mTLS, its error mapping) and generated stub.
        stub = openshell_pb2_grpc.OpenShellStub(client._channel)
        for method in service.methods:
            request = message_factory.GetMessageClass(method.input_type)()
            call = getattr(stub, method.name)
            try:
                if method.client_streaming:
                    answer = call(iter([request]), timeout=timeout)
                    if method.server_streaming:
                        _first(answer)
                elif method.server_streaming:
                    _first(call(request, timeout=timeout))
                else:
                    answer = call(request, timeout=timeout)
                    if method.name == "CreateSandbox":
                        created = answer.sandbox.metadata.name
                        stub.DeleteSandbox(
                            openshell_pb2.DeleteSandboxRequest(
                                name=answer.sandbox.metadata.name,
                                workspace_scope=datamodel_pb2.WorkspaceSelector(workspace=answer.sandbox.metadata.workspace or "default"),
                            ),
                            timeout=120,
                        )
                out[method.name] = "OK"
            except grpc.RpcError as exc:
                out[method.name] = exc.code().name
    return {"codes": out, "created": created}


def inventory() -> dict:
    return {"rpcs": rpcs(), "methods": methods()}


def markdown(inv: dict) -> str:
    """Table rows (status and why left as ``?``) for docs/sdk-compat.md."""
    lines = ["| RPC | kind | SDK public methods | status | why / notes |", "|---|---|---|---|---|"]
    for rpc in inv["rpcs"]:
        sdk = ", ".join(f"`{m}`" for m in inv["methods"].get(rpc["name"], [])) or "— (stub only)"
        lines.append(f"| `{rpc['name']}` | {rpc['kind']} | {sdk} | ? | ? |")
    return "\n".join(lines)


if __name__ == "__main__":
    if "--probe" in sys.argv[1:]:
        print(json.dumps(probe()))
    else:
        inv = inventory()
        print(markdown(inv) if "--markdown" in sys.argv[1:] else json.dumps(inv))
