"""The committed generated code matches the .proto sources, and the wire shapes
the SDK depends on keep their numbers (docs/sdk-compat.md)."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest
from openshell._proto import datamodel_pb2, openshell_pb2, openshell_pb2_grpc, supervisor_pb2

PROTO_DIR = pathlib.Path(__file__).resolve().parents[2] / "proto"


def _load_generate():
    spec = importlib.util.spec_from_file_location("_os_proto_generate", PROTO_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_not_stale():
    pytest.importorskip("grpc_tools")
    stale = _load_generate().stale_files()
    assert stale == [], f"regenerate with `nox -s protos`: stale {stale}"


def test_generated_imports_are_package_relative():
    assert openshell_pb2_grpc.__name__ == "openshell._proto.openshell_pb2_grpc"
    assert supervisor_pb2.DESCRIPTOR.package == "openshell.v1"


@pytest.mark.parametrize(
    ("message", "field", "number"),
    [
        ("ObjectMeta", "created_time", 103),
        ("CreateSandboxRequest", "workspace_scope", 7),
        ("ListSandboxesRequest", "workspace_scope", 4),
        ("DeleteSandboxResponse", "outcome", 2),
        ("ExecSandboxRequest", "execution_timeout", 105),
        ("ExecSandboxRequest", "workspace_scope", 12),
        ("SandboxStatus", "phase", 6),
    ],
)
def test_sdk_shared_field_numbers(message, field, number):
    module = datamodel_pb2 if message == "ObjectMeta" else openshell_pb2
    desc = getattr(module, message).DESCRIPTOR
    assert desc.fields_by_name[field].number == number
