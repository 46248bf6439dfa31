# ruff: noqa
from . import datamodel_pb2 as _datamodel_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InferenceRoute(_message.Message):
    __slots__ = ("backend", "model", "base_url", "provider", "protocols")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROTOCOLS_FIELD_NUMBER: _ClassVar[int]
    backend: str
    model: str
    base_url: str
    provider: str
    protocols: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, backend: _Optional[str] = ..., model: _Optional[str] = ..., base_url: _Optional[str] = ..., provider: _Optional[str] = ..., protocols: _Optional[_Iterable[str]] = ...) -> None: ...

class SetInferenceRouteRequest(_message.Message):
    __slots__ = ("route", "workspace_scope")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    route: InferenceRoute
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    def __init__(self, route: _Optional[_Union[InferenceRoute, _Mapping]] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ...) -> None: ...

class GetInferenceRouteRequest(_message.Message):
    __slots__ = ("workspace_scope",)
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    def __init__(self, workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ...) -> None: ...

class InferenceRouteResponse(_message.Message):
    __slots__ = ("route", "revision")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    route: InferenceRoute
    revision: int
    def __init__(self, route: _Optional[_Union[InferenceRoute, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...
