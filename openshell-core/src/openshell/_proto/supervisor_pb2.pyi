# ruff: noqa
import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from . import openshell_pb2 as _openshell_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PolicyLoadStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_LOAD_STATUS_UNSPECIFIED: _ClassVar[PolicyLoadStatus]
    POLICY_LOAD_STATUS_LOADED: _ClassVar[PolicyLoadStatus]
    POLICY_LOAD_STATUS_FAILED: _ClassVar[PolicyLoadStatus]
POLICY_LOAD_STATUS_UNSPECIFIED: PolicyLoadStatus
POLICY_LOAD_STATUS_LOADED: PolicyLoadStatus
POLICY_LOAD_STATUS_FAILED: PolicyLoadStatus

class GetSandboxConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSandboxConfigResponse(_message.Message):
    __slots__ = ("sandbox_id", "name", "workspace", "labels", "command", "environment", "extra_hosts", "policy", "netns_index", "log_level", "sandbox_ca_cert_pem", "sandbox_ca_key_pem")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_HOSTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    NETNS_INDEX_FIELD_NUMBER: _ClassVar[int]
    LOG_LEVEL_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_CA_CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_CA_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    name: str
    workspace: str
    labels: _containers.ScalarMap[str, str]
    command: _containers.RepeatedScalarFieldContainer[str]
    environment: _containers.ScalarMap[str, str]
    extra_hosts: _containers.RepeatedScalarFieldContainer[str]
    policy: PolicyRevision
    netns_index: int
    log_level: str
    sandbox_ca_cert_pem: bytes
    sandbox_ca_key_pem: bytes
    def __init__(self, sandbox_id: _Optional[str] = ..., name: _Optional[str] = ..., workspace: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., command: _Optional[_Iterable[str]] = ..., environment: _Optional[_Mapping[str, str]] = ..., extra_hosts: _Optional[_Iterable[str]] = ..., policy: _Optional[_Union[PolicyRevision, _Mapping]] = ..., netns_index: _Optional[int] = ..., log_level: _Optional[str] = ..., sandbox_ca_cert_pem: _Optional[bytes] = ..., sandbox_ca_key_pem: _Optional[bytes] = ...) -> None: ...

class PolicyReport(_message.Message):
    __slots__ = ("revision", "status", "error")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    revision: int
    status: PolicyLoadStatus
    error: str
    def __init__(self, revision: _Optional[int] = ..., status: _Optional[_Union[PolicyLoadStatus, str]] = ..., error: _Optional[str] = ...) -> None: ...

class ReportStatusRequest(_message.Message):
    __slots__ = ("phase", "reason", "policy", "supervisor_pid")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    SUPERVISOR_PID_FIELD_NUMBER: _ClassVar[int]
    phase: _openshell_pb2.SandboxPhase
    reason: str
    policy: PolicyReport
    supervisor_pid: int
    def __init__(self, phase: _Optional[_Union[_openshell_pb2.SandboxPhase, str]] = ..., reason: _Optional[str] = ..., policy: _Optional[_Union[PolicyReport, _Mapping]] = ..., supervisor_pid: _Optional[int] = ...) -> None: ...

class ReportStatusResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchPolicyRequest(_message.Message):
    __slots__ = ("after_revision",)
    AFTER_REVISION_FIELD_NUMBER: _ClassVar[int]
    after_revision: int
    def __init__(self, after_revision: _Optional[int] = ...) -> None: ...

class PolicyRevision(_message.Message):
    __slots__ = ("revision", "policy_yaml", "policy_json")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    POLICY_JSON_FIELD_NUMBER: _ClassVar[int]
    revision: int
    policy_yaml: str
    policy_json: str
    def __init__(self, revision: _Optional[int] = ..., policy_yaml: _Optional[str] = ..., policy_json: _Optional[str] = ...) -> None: ...

class LogRecord(_message.Message):
    __slots__ = ("time", "level", "target", "message", "fields")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TIME_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    level: str
    target: str
    message: str
    fields: _containers.ScalarMap[str, str]
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., level: _Optional[str] = ..., target: _Optional[str] = ..., message: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class LogBatch(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[LogRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[LogRecord, _Mapping]]] = ...) -> None: ...

class PushLogsResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class GetProviderEnvironmentRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProviderCredential(_message.Message):
    __slots__ = ("provider", "type", "env_name", "value", "hosts")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ENV_NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    type: str
    env_name: str
    value: str
    hosts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, provider: _Optional[str] = ..., type: _Optional[str] = ..., env_name: _Optional[str] = ..., value: _Optional[str] = ..., hosts: _Optional[_Iterable[str]] = ...) -> None: ...

class ProviderEnvironment(_message.Message):
    __slots__ = ("environment", "credentials", "revision")
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    environment: _containers.ScalarMap[str, str]
    credentials: _containers.RepeatedCompositeFieldContainer[ProviderCredential]
    revision: int
    def __init__(self, environment: _Optional[_Mapping[str, str]] = ..., credentials: _Optional[_Iterable[_Union[ProviderCredential, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class AckProviderEnvironmentRequest(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class AckProviderEnvironmentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchInferenceBundleRequest(_message.Message):
    __slots__ = ("after_revision",)
    AFTER_REVISION_FIELD_NUMBER: _ClassVar[int]
    after_revision: int
    def __init__(self, after_revision: _Optional[int] = ...) -> None: ...

class InferenceBundle(_message.Message):
    __slots__ = ("revision", "backend", "protocols", "base_url", "model", "auth_headers")
    class AuthHeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REVISION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PROTOCOLS_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    AUTH_HEADERS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    backend: str
    protocols: _containers.RepeatedScalarFieldContainer[str]
    base_url: str
    model: str
    auth_headers: _containers.ScalarMap[str, str]
    def __init__(self, revision: _Optional[int] = ..., backend: _Optional[str] = ..., protocols: _Optional[_Iterable[str]] = ..., base_url: _Optional[str] = ..., model: _Optional[str] = ..., auth_headers: _Optional[_Mapping[str, str]] = ...) -> None: ...
