# ruff: noqa
import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from . import datamodel_pb2 as _datamodel_pb2
from . import sandbox_pb2 as _sandbox_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServiceStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVICE_STATUS_UNSPECIFIED: _ClassVar[ServiceStatus]
    SERVICE_STATUS_HEALTHY: _ClassVar[ServiceStatus]
    SERVICE_STATUS_DEGRADED: _ClassVar[ServiceStatus]
    SERVICE_STATUS_UNHEALTHY: _ClassVar[ServiceStatus]

class SandboxPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SANDBOX_PHASE_UNSPECIFIED: _ClassVar[SandboxPhase]
    SANDBOX_PHASE_PROVISIONING: _ClassVar[SandboxPhase]
    SANDBOX_PHASE_READY: _ClassVar[SandboxPhase]
    SANDBOX_PHASE_ERROR: _ClassVar[SandboxPhase]
    SANDBOX_PHASE_DELETING: _ClassVar[SandboxPhase]
    SANDBOX_PHASE_UNKNOWN: _ClassVar[SandboxPhase]
    SANDBOX_PHASE_STOPPING: _ClassVar[SandboxPhase]
    SANDBOX_PHASE_STOPPED: _ClassVar[SandboxPhase]
    SANDBOX_PHASE_STARTING: _ClassVar[SandboxPhase]
    SANDBOX_PHASE_COMPLETED: _ClassVar[SandboxPhase]

class DeletionOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELETION_OUTCOME_UNSPECIFIED: _ClassVar[DeletionOutcome]
    DELETION_OUTCOME_COMPLETED: _ClassVar[DeletionOutcome]
    DELETION_OUTCOME_ACCEPTED: _ClassVar[DeletionOutcome]
    DELETION_OUTCOME_ALREADY_ABSENT: _ClassVar[DeletionOutcome]

class PolicyStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_STATUS_UNSPECIFIED: _ClassVar[PolicyStatus]
    POLICY_STATUS_PENDING: _ClassVar[PolicyStatus]
    POLICY_STATUS_LOADED: _ClassVar[PolicyStatus]
    POLICY_STATUS_FAILED: _ClassVar[PolicyStatus]
    POLICY_STATUS_SUPERSEDED: _ClassVar[PolicyStatus]
SERVICE_STATUS_UNSPECIFIED: ServiceStatus
SERVICE_STATUS_HEALTHY: ServiceStatus
SERVICE_STATUS_DEGRADED: ServiceStatus
SERVICE_STATUS_UNHEALTHY: ServiceStatus
SANDBOX_PHASE_UNSPECIFIED: SandboxPhase
SANDBOX_PHASE_PROVISIONING: SandboxPhase
SANDBOX_PHASE_READY: SandboxPhase
SANDBOX_PHASE_ERROR: SandboxPhase
SANDBOX_PHASE_DELETING: SandboxPhase
SANDBOX_PHASE_UNKNOWN: SandboxPhase
SANDBOX_PHASE_STOPPING: SandboxPhase
SANDBOX_PHASE_STOPPED: SandboxPhase
SANDBOX_PHASE_STARTING: SandboxPhase
SANDBOX_PHASE_COMPLETED: SandboxPhase
DELETION_OUTCOME_UNSPECIFIED: DeletionOutcome
DELETION_OUTCOME_COMPLETED: DeletionOutcome
DELETION_OUTCOME_ACCEPTED: DeletionOutcome
DELETION_OUTCOME_ALREADY_ABSENT: DeletionOutcome
POLICY_STATUS_UNSPECIFIED: PolicyStatus
POLICY_STATUS_PENDING: PolicyStatus
POLICY_STATUS_LOADED: PolicyStatus
POLICY_STATUS_FAILED: PolicyStatus
POLICY_STATUS_SUPERSEDED: PolicyStatus

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("status", "version")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    status: ServiceStatus
    version: str
    def __init__(self, status: _Optional[_Union[ServiceStatus, str]] = ..., version: _Optional[str] = ...) -> None: ...

class SandboxSpec(_message.Message):
    __slots__ = ("log_level", "environment", "providers", "template", "command", "policy", "policy_yaml", "extra_hosts")
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LOG_LEVEL_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    EXTRA_HOSTS_FIELD_NUMBER: _ClassVar[int]
    log_level: str
    environment: _containers.ScalarMap[str, str]
    providers: _containers.RepeatedScalarFieldContainer[str]
    template: SandboxTemplate
    command: _containers.RepeatedScalarFieldContainer[str]
    policy: _sandbox_pb2.SandboxPolicy
    policy_yaml: str
    extra_hosts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, log_level: _Optional[str] = ..., environment: _Optional[_Mapping[str, str]] = ..., providers: _Optional[_Iterable[str]] = ..., template: _Optional[_Union[SandboxTemplate, _Mapping]] = ..., command: _Optional[_Iterable[str]] = ..., policy: _Optional[_Union[_sandbox_pb2.SandboxPolicy, _Mapping]] = ..., policy_yaml: _Optional[str] = ..., extra_hosts: _Optional[_Iterable[str]] = ...) -> None: ...

class SandboxTemplate(_message.Message):
    __slots__ = ("image", "resources")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    image: str
    resources: _struct_pb2.Struct
    def __init__(self, image: _Optional[str] = ..., resources: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class SandboxCondition(_message.Message):
    __slots__ = ("type", "status", "reason", "message", "transition_time")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_TIME_FIELD_NUMBER: _ClassVar[int]
    type: str
    status: str
    reason: str
    message: str
    transition_time: _timestamp_pb2.Timestamp
    def __init__(self, type: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., transition_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SandboxStatus(_message.Message):
    __slots__ = ("conditions", "phase", "current_policy_version", "compute_driver")
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_DRIVER_FIELD_NUMBER: _ClassVar[int]
    conditions: _containers.RepeatedCompositeFieldContainer[SandboxCondition]
    phase: SandboxPhase
    current_policy_version: int
    compute_driver: str
    def __init__(self, conditions: _Optional[_Iterable[_Union[SandboxCondition, _Mapping]]] = ..., phase: _Optional[_Union[SandboxPhase, str]] = ..., current_policy_version: _Optional[int] = ..., compute_driver: _Optional[str] = ...) -> None: ...

class Sandbox(_message.Message):
    __slots__ = ("metadata", "spec", "status", "created_from_workload_template")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FROM_WORKLOAD_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    metadata: _datamodel_pb2.ObjectMeta
    spec: SandboxSpec
    status: SandboxStatus
    created_from_workload_template: SandboxWorkloadTemplateProvenance
    def __init__(self, metadata: _Optional[_Union[_datamodel_pb2.ObjectMeta, _Mapping]] = ..., spec: _Optional[_Union[SandboxSpec, _Mapping]] = ..., status: _Optional[_Union[SandboxStatus, _Mapping]] = ..., created_from_workload_template: _Optional[_Union[SandboxWorkloadTemplateProvenance, _Mapping]] = ...) -> None: ...

class SandboxWorkloadTemplateProvenance(_message.Message):
    __slots__ = ("name", "resource_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    resource_version: str
    def __init__(self, name: _Optional[str] = ..., resource_version: _Optional[str] = ...) -> None: ...

class CreateSandboxRequest(_message.Message):
    __slots__ = ("spec", "name", "labels", "annotations", "workload_template", "workspace_scope", "request_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SPEC_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: SandboxSpec
    name: str
    labels: _containers.ScalarMap[str, str]
    annotations: _containers.ScalarMap[str, str]
    workload_template: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    request_id: str
    def __init__(self, spec: _Optional[_Union[SandboxSpec, _Mapping]] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., annotations: _Optional[_Mapping[str, str]] = ..., workload_template: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SandboxResponse(_message.Message):
    __slots__ = ("sandbox", "service_urls")
    class ServiceUrlsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    SERVICE_URLS_FIELD_NUMBER: _ClassVar[int]
    sandbox: Sandbox
    service_urls: _containers.ScalarMap[str, str]
    def __init__(self, sandbox: _Optional[_Union[Sandbox, _Mapping]] = ..., service_urls: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetSandboxRequest(_message.Message):
    __slots__ = ("name", "workspace_scope")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    def __init__(self, name: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ...) -> None: ...

class ListSandboxesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "label_selector", "workspace_scope")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    label_selector: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., label_selector: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ...) -> None: ...

class ListSandboxesResponse(_message.Message):
    __slots__ = ("sandboxes", "next_page_token")
    SANDBOXES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sandboxes: _containers.RepeatedCompositeFieldContainer[Sandbox]
    next_page_token: str
    def __init__(self, sandboxes: _Optional[_Iterable[_Union[Sandbox, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteSandboxRequest(_message.Message):
    __slots__ = ("name", "workspace_scope", "allow_missing", "request_id", "keep_workdir")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KEEP_WORKDIR_FIELD_NUMBER: _ClassVar[int]
    name: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    allow_missing: bool
    request_id: str
    keep_workdir: bool
    def __init__(self, name: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., allow_missing: _Optional[bool] = ..., request_id: _Optional[str] = ..., keep_workdir: _Optional[bool] = ...) -> None: ...

class DeleteSandboxResponse(_message.Message):
    __slots__ = ("outcome", "sandbox_id")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    outcome: DeletionOutcome
    sandbox_id: str
    def __init__(self, outcome: _Optional[_Union[DeletionOutcome, str]] = ..., sandbox_id: _Optional[str] = ...) -> None: ...

class StopSandboxRequest(_message.Message):
    __slots__ = ("name", "workspace_scope", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    request_id: str
    def __init__(self, name: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class StartSandboxRequest(_message.Message):
    __slots__ = ("name", "workspace_scope", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    request_id: str
    def __init__(self, name: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class WatchSandboxRequest(_message.Message):
    __slots__ = ("sandbox", "follow_status", "follow_logs", "follow_events", "log_tail_lines", "event_tail", "stop_on_terminal", "log_sources", "log_min_level", "workspace_scope", "since_time")
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_STATUS_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_LOGS_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_EVENTS_FIELD_NUMBER: _ClassVar[int]
    LOG_TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    EVENT_TAIL_FIELD_NUMBER: _ClassVar[int]
    STOP_ON_TERMINAL_FIELD_NUMBER: _ClassVar[int]
    LOG_SOURCES_FIELD_NUMBER: _ClassVar[int]
    LOG_MIN_LEVEL_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    SINCE_TIME_FIELD_NUMBER: _ClassVar[int]
    sandbox: str
    follow_status: bool
    follow_logs: bool
    follow_events: bool
    log_tail_lines: int
    event_tail: int
    stop_on_terminal: bool
    log_sources: _containers.RepeatedScalarFieldContainer[str]
    log_min_level: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    since_time: _timestamp_pb2.Timestamp
    def __init__(self, sandbox: _Optional[str] = ..., follow_status: _Optional[bool] = ..., follow_logs: _Optional[bool] = ..., follow_events: _Optional[bool] = ..., log_tail_lines: _Optional[int] = ..., event_tail: _Optional[int] = ..., stop_on_terminal: _Optional[bool] = ..., log_sources: _Optional[_Iterable[str]] = ..., log_min_level: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., since_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PlatformEvent(_message.Message):
    __slots__ = ("source", "type", "reason", "message", "metadata", "event_time")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    source: str
    type: str
    reason: str
    message: str
    metadata: _containers.ScalarMap[str, str]
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, source: _Optional[str] = ..., type: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SandboxStreamWarning(_message.Message):
    __slots__ = ("message", "dropped")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    message: str
    dropped: int
    def __init__(self, message: _Optional[str] = ..., dropped: _Optional[int] = ...) -> None: ...

class SandboxStreamEvent(_message.Message):
    __slots__ = ("sandbox", "log", "event", "warning")
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    sandbox: Sandbox
    log: SandboxLogLine
    event: PlatformEvent
    warning: SandboxStreamWarning
    def __init__(self, sandbox: _Optional[_Union[Sandbox, _Mapping]] = ..., log: _Optional[_Union[SandboxLogLine, _Mapping]] = ..., event: _Optional[_Union[PlatformEvent, _Mapping]] = ..., warning: _Optional[_Union[SandboxStreamWarning, _Mapping]] = ...) -> None: ...

class ExecSandboxRequest(_message.Message):
    __slots__ = ("sandbox", "command", "workdir", "environment", "stdin", "tty", "cols", "rows", "no_login_shell", "request_id", "workspace_scope", "execution_timeout")
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    WORKDIR_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    NO_LOGIN_SHELL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    sandbox: str
    command: _containers.RepeatedScalarFieldContainer[str]
    workdir: str
    environment: _containers.ScalarMap[str, str]
    stdin: bytes
    tty: bool
    cols: int
    rows: int
    no_login_shell: bool
    request_id: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    execution_timeout: _duration_pb2.Duration
    def __init__(self, sandbox: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., workdir: _Optional[str] = ..., environment: _Optional[_Mapping[str, str]] = ..., stdin: _Optional[bytes] = ..., tty: _Optional[bool] = ..., cols: _Optional[int] = ..., rows: _Optional[int] = ..., no_login_shell: _Optional[bool] = ..., request_id: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., execution_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ExecSandboxStdout(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ExecSandboxStderr(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ExecSandboxExit(_message.Message):
    __slots__ = ("exit_code",)
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    def __init__(self, exit_code: _Optional[int] = ...) -> None: ...

class ExecSandboxEvent(_message.Message):
    __slots__ = ("stdout", "stderr", "exit")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    stdout: ExecSandboxStdout
    stderr: ExecSandboxStderr
    exit: ExecSandboxExit
    def __init__(self, stdout: _Optional[_Union[ExecSandboxStdout, _Mapping]] = ..., stderr: _Optional[_Union[ExecSandboxStderr, _Mapping]] = ..., exit: _Optional[_Union[ExecSandboxExit, _Mapping]] = ...) -> None: ...

class ExecSandboxWindowResize(_message.Message):
    __slots__ = ("cols", "rows")
    COLS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    cols: int
    rows: int
    def __init__(self, cols: _Optional[int] = ..., rows: _Optional[int] = ...) -> None: ...

class ExecSandboxInput(_message.Message):
    __slots__ = ("start", "stdin", "resize")
    START_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    start: ExecSandboxRequest
    stdin: bytes
    resize: ExecSandboxWindowResize
    def __init__(self, start: _Optional[_Union[ExecSandboxRequest, _Mapping]] = ..., stdin: _Optional[bytes] = ..., resize: _Optional[_Union[ExecSandboxWindowResize, _Mapping]] = ...) -> None: ...

class CreateSshSessionRequest(_message.Message):
    __slots__ = ("sandbox", "workspace_scope")
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    sandbox: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    def __init__(self, sandbox: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ...) -> None: ...

class CreateSshSessionResponse(_message.Message):
    __slots__ = ("sandbox_id", "token", "gateway_host", "gateway_port", "gateway_scheme", "host_key_fingerprint", "expiration_time")
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_HOST_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_PORT_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_SCHEME_FIELD_NUMBER: _ClassVar[int]
    HOST_KEY_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_TIME_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    token: str
    gateway_host: str
    gateway_port: int
    gateway_scheme: str
    host_key_fingerprint: str
    expiration_time: _timestamp_pb2.Timestamp
    def __init__(self, sandbox_id: _Optional[str] = ..., token: _Optional[str] = ..., gateway_host: _Optional[str] = ..., gateway_port: _Optional[int] = ..., gateway_scheme: _Optional[str] = ..., host_key_fingerprint: _Optional[str] = ..., expiration_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RevokeSshSessionRequest(_message.Message):
    __slots__ = ("token", "allow_missing")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    token: str
    allow_missing: bool
    def __init__(self, token: _Optional[str] = ..., allow_missing: _Optional[bool] = ...) -> None: ...

class RevokeSshSessionResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: DeletionOutcome
    def __init__(self, outcome: _Optional[_Union[DeletionOutcome, str]] = ...) -> None: ...

class CreateWorkspaceRequest(_message.Message):
    __slots__ = ("name", "labels", "request_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    request_id: str
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateWorkspaceResponse(_message.Message):
    __slots__ = ("workspace",)
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    workspace: _datamodel_pb2.Workspace
    def __init__(self, workspace: _Optional[_Union[_datamodel_pb2.Workspace, _Mapping]] = ...) -> None: ...

class DeleteWorkspaceRequest(_message.Message):
    __slots__ = ("name", "allow_missing", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    allow_missing: bool
    request_id: str
    def __init__(self, name: _Optional[str] = ..., allow_missing: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteWorkspaceResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: DeletionOutcome
    def __init__(self, outcome: _Optional[_Union[DeletionOutcome, str]] = ...) -> None: ...

class GetWorkspaceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetWorkspaceResponse(_message.Message):
    __slots__ = ("workspace",)
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    workspace: _datamodel_pb2.Workspace
    def __init__(self, workspace: _Optional[_Union[_datamodel_pb2.Workspace, _Mapping]] = ...) -> None: ...

class ListWorkspacesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "label_selector")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    label_selector: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., label_selector: _Optional[str] = ...) -> None: ...

class ListWorkspacesResponse(_message.Message):
    __slots__ = ("workspaces", "next_page_token")
    WORKSPACES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workspaces: _containers.RepeatedCompositeFieldContainer[_datamodel_pb2.Workspace]
    next_page_token: str
    def __init__(self, workspaces: _Optional[_Iterable[_Union[_datamodel_pb2.Workspace, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SandboxResources(_message.Message):
    __slots__ = ("cpu", "memory")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    cpu: str
    memory: str
    def __init__(self, cpu: _Optional[str] = ..., memory: _Optional[str] = ...) -> None: ...

class SandboxWorkloadConfig(_message.Message):
    __slots__ = ("image", "environment", "resources")
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    image: str
    environment: _containers.ScalarMap[str, str]
    resources: SandboxResources
    def __init__(self, image: _Optional[str] = ..., environment: _Optional[_Mapping[str, str]] = ..., resources: _Optional[_Union[SandboxResources, _Mapping]] = ...) -> None: ...

class SandboxWorkloadTemplateSpec(_message.Message):
    __slots__ = ("workload", "policy_yaml")
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    workload: SandboxWorkloadConfig
    policy_yaml: str
    def __init__(self, workload: _Optional[_Union[SandboxWorkloadConfig, _Mapping]] = ..., policy_yaml: _Optional[str] = ...) -> None: ...

class SandboxWorkloadTemplate(_message.Message):
    __slots__ = ("metadata", "spec")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    metadata: _datamodel_pb2.ObjectMeta
    spec: SandboxWorkloadTemplateSpec
    def __init__(self, metadata: _Optional[_Union[_datamodel_pb2.ObjectMeta, _Mapping]] = ..., spec: _Optional[_Union[SandboxWorkloadTemplateSpec, _Mapping]] = ...) -> None: ...

class CreateSandboxTemplateRequest(_message.Message):
    __slots__ = ("template", "workspace_scope", "request_id")
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    template: SandboxWorkloadTemplate
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    request_id: str
    def __init__(self, template: _Optional[_Union[SandboxWorkloadTemplate, _Mapping]] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SandboxTemplateResponse(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: SandboxWorkloadTemplate
    def __init__(self, template: _Optional[_Union[SandboxWorkloadTemplate, _Mapping]] = ...) -> None: ...

class GetSandboxTemplateRequest(_message.Message):
    __slots__ = ("name", "workspace_scope")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    def __init__(self, name: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ...) -> None: ...

class ListSandboxTemplatesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "label_selector", "workspace_scope")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    label_selector: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., label_selector: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ...) -> None: ...

class ListSandboxTemplatesResponse(_message.Message):
    __slots__ = ("templates", "next_page_token")
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[SandboxWorkloadTemplate]
    next_page_token: str
    def __init__(self, templates: _Optional[_Iterable[_Union[SandboxWorkloadTemplate, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteSandboxTemplateRequest(_message.Message):
    __slots__ = ("name", "workspace_scope", "allow_missing", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    allow_missing: bool
    request_id: str
    def __init__(self, name: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., allow_missing: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteSandboxTemplateResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: DeletionOutcome
    def __init__(self, outcome: _Optional[_Union[DeletionOutcome, str]] = ...) -> None: ...

class CreateProviderRequest(_message.Message):
    __slots__ = ("provider", "workspace_scope", "request_id")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    provider: _datamodel_pb2.Provider
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    request_id: str
    def __init__(self, provider: _Optional[_Union[_datamodel_pb2.Provider, _Mapping]] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ProviderResponse(_message.Message):
    __slots__ = ("provider",)
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    provider: _datamodel_pb2.Provider
    def __init__(self, provider: _Optional[_Union[_datamodel_pb2.Provider, _Mapping]] = ...) -> None: ...

class GetProviderRequest(_message.Message):
    __slots__ = ("name", "workspace_scope")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    def __init__(self, name: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ...) -> None: ...

class ListProvidersRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "workspace_scope", "label_selector")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    label_selector: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., label_selector: _Optional[str] = ...) -> None: ...

class ListProvidersResponse(_message.Message):
    __slots__ = ("providers", "next_page_token")
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedCompositeFieldContainer[_datamodel_pb2.Provider]
    next_page_token: str
    def __init__(self, providers: _Optional[_Iterable[_Union[_datamodel_pb2.Provider, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateProviderRequest(_message.Message):
    __slots__ = ("provider", "workspace_scope", "request_id", "remove_credentials", "remove_config")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REMOVE_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    provider: _datamodel_pb2.Provider
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    request_id: str
    remove_credentials: _containers.RepeatedScalarFieldContainer[str]
    remove_config: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, provider: _Optional[_Union[_datamodel_pb2.Provider, _Mapping]] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., request_id: _Optional[str] = ..., remove_credentials: _Optional[_Iterable[str]] = ..., remove_config: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteProviderRequest(_message.Message):
    __slots__ = ("name", "workspace_scope", "allow_missing", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    allow_missing: bool
    request_id: str
    def __init__(self, name: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., allow_missing: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteProviderResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: DeletionOutcome
    def __init__(self, outcome: _Optional[_Union[DeletionOutcome, str]] = ...) -> None: ...

class ListSandboxProvidersRequest(_message.Message):
    __slots__ = ("sandbox", "workspace_scope", "page_size", "page_token")
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sandbox: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    page_size: int
    page_token: str
    def __init__(self, sandbox: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSandboxProvidersResponse(_message.Message):
    __slots__ = ("providers", "next_page_token")
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedCompositeFieldContainer[_datamodel_pb2.Provider]
    next_page_token: str
    def __init__(self, providers: _Optional[_Iterable[_Union[_datamodel_pb2.Provider, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AttachSandboxProviderRequest(_message.Message):
    __slots__ = ("sandbox", "provider", "expected_resource_version", "workspace_scope", "request_id")
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    sandbox: str
    provider: str
    expected_resource_version: int
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    request_id: str
    def __init__(self, sandbox: _Optional[str] = ..., provider: _Optional[str] = ..., expected_resource_version: _Optional[int] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AttachSandboxProviderResponse(_message.Message):
    __slots__ = ("sandbox", "attached")
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_FIELD_NUMBER: _ClassVar[int]
    sandbox: Sandbox
    attached: bool
    def __init__(self, sandbox: _Optional[_Union[Sandbox, _Mapping]] = ..., attached: _Optional[bool] = ...) -> None: ...

class DetachSandboxProviderRequest(_message.Message):
    __slots__ = ("sandbox", "provider", "expected_resource_version", "workspace_scope", "request_id")
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    sandbox: str
    provider: str
    expected_resource_version: int
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    request_id: str
    def __init__(self, sandbox: _Optional[str] = ..., provider: _Optional[str] = ..., expected_resource_version: _Optional[int] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DetachSandboxProviderResponse(_message.Message):
    __slots__ = ("sandbox", "detached")
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    DETACHED_FIELD_NUMBER: _ClassVar[int]
    sandbox: Sandbox
    detached: bool
    def __init__(self, sandbox: _Optional[_Union[Sandbox, _Mapping]] = ..., detached: _Optional[bool] = ...) -> None: ...

class UpdateConfigRequest(_message.Message):
    __slots__ = ("sandbox", "policy", "workspace_scope", "request_id", "policy_yaml")
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    sandbox: str
    policy: _sandbox_pb2.SandboxPolicy
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    request_id: str
    policy_yaml: str
    def __init__(self, sandbox: _Optional[str] = ..., policy: _Optional[_Union[_sandbox_pb2.SandboxPolicy, _Mapping]] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., request_id: _Optional[str] = ..., policy_yaml: _Optional[str] = ...) -> None: ...

class UpdateConfigResponse(_message.Message):
    __slots__ = ("version", "policy_hash")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_HASH_FIELD_NUMBER: _ClassVar[int]
    version: int
    policy_hash: str
    def __init__(self, version: _Optional[int] = ..., policy_hash: _Optional[str] = ...) -> None: ...

class SandboxPolicyRevision(_message.Message):
    __slots__ = ("version", "policy_hash", "status", "load_error", "created_time", "loaded_time", "policy", "policy_yaml")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_HASH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LOAD_ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    LOADED_TIME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    version: int
    policy_hash: str
    status: PolicyStatus
    load_error: str
    created_time: _timestamp_pb2.Timestamp
    loaded_time: _timestamp_pb2.Timestamp
    policy: _sandbox_pb2.SandboxPolicy
    policy_yaml: str
    def __init__(self, version: _Optional[int] = ..., policy_hash: _Optional[str] = ..., status: _Optional[_Union[PolicyStatus, str]] = ..., load_error: _Optional[str] = ..., created_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., loaded_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., policy: _Optional[_Union[_sandbox_pb2.SandboxPolicy, _Mapping]] = ..., policy_yaml: _Optional[str] = ...) -> None: ...

class GetSandboxPolicyStatusRequest(_message.Message):
    __slots__ = ("sandbox", "version", "workspace_scope")
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    sandbox: str
    version: int
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    def __init__(self, sandbox: _Optional[str] = ..., version: _Optional[int] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., **kwargs) -> None: ...

class GetSandboxPolicyStatusResponse(_message.Message):
    __slots__ = ("revision", "active_version")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    revision: SandboxPolicyRevision
    active_version: int
    def __init__(self, revision: _Optional[_Union[SandboxPolicyRevision, _Mapping]] = ..., active_version: _Optional[int] = ...) -> None: ...

class ListSandboxPoliciesRequest(_message.Message):
    __slots__ = ("sandbox", "page_size", "page_token", "workspace_scope")
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    sandbox: str
    page_size: int
    page_token: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    def __init__(self, sandbox: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., **kwargs) -> None: ...

class ListSandboxPoliciesResponse(_message.Message):
    __slots__ = ("revisions", "next_page_token")
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    revisions: _containers.RepeatedCompositeFieldContainer[SandboxPolicyRevision]
    next_page_token: str
    def __init__(self, revisions: _Optional[_Iterable[_Union[SandboxPolicyRevision, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetSandboxLogsRequest(_message.Message):
    __slots__ = ("sandbox", "lines", "sources", "min_level", "workspace_scope", "since_time")
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    MIN_LEVEL_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    SINCE_TIME_FIELD_NUMBER: _ClassVar[int]
    sandbox: str
    lines: int
    sources: _containers.RepeatedScalarFieldContainer[str]
    min_level: str
    workspace_scope: _datamodel_pb2.WorkspaceSelector
    since_time: _timestamp_pb2.Timestamp
    def __init__(self, sandbox: _Optional[str] = ..., lines: _Optional[int] = ..., sources: _Optional[_Iterable[str]] = ..., min_level: _Optional[str] = ..., workspace_scope: _Optional[_Union[_datamodel_pb2.WorkspaceSelector, _Mapping]] = ..., since_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SandboxLogLine(_message.Message):
    __slots__ = ("sandbox_id", "level", "target", "message", "source", "fields", "event_time")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    level: str
    target: str
    message: str
    source: str
    fields: _containers.ScalarMap[str, str]
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, sandbox_id: _Optional[str] = ..., level: _Optional[str] = ..., target: _Optional[str] = ..., message: _Optional[str] = ..., source: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSandboxLogsResponse(_message.Message):
    __slots__ = ("logs", "buffer_total")
    LOGS_FIELD_NUMBER: _ClassVar[int]
    BUFFER_TOTAL_FIELD_NUMBER: _ClassVar[int]
    logs: _containers.RepeatedCompositeFieldContainer[SandboxLogLine]
    buffer_total: int
    def __init__(self, logs: _Optional[_Iterable[_Union[SandboxLogLine, _Mapping]]] = ..., buffer_total: _Optional[int] = ...) -> None: ...

class GetGatewayInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetGatewayInfoResponse(_message.Message):
    __slots__ = ("status", "gateway_version", "compute_drivers")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_DRIVERS_FIELD_NUMBER: _ClassVar[int]
    status: ServiceStatus
    gateway_version: str
    compute_drivers: _containers.RepeatedCompositeFieldContainer[ComputeDriverInfo]
    def __init__(self, status: _Optional[_Union[ServiceStatus, str]] = ..., gateway_version: _Optional[str] = ..., compute_drivers: _Optional[_Iterable[_Union[ComputeDriverInfo, _Mapping]]] = ...) -> None: ...

class ComputeDriverInfo(_message.Message):
    __slots__ = ("name", "capabilities")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    capabilities: ComputeDriverCapabilities
    def __init__(self, name: _Optional[str] = ..., capabilities: _Optional[_Union[ComputeDriverCapabilities, _Mapping]] = ...) -> None: ...

class ComputeDriverCapabilities(_message.Message):
    __slots__ = ("driver_name", "driver_version", "resource_capabilities")
    DRIVER_NAME_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    driver_name: str
    driver_version: str
    resource_capabilities: ResourceCapabilities
    def __init__(self, driver_name: _Optional[str] = ..., driver_version: _Optional[str] = ..., resource_capabilities: _Optional[_Union[ResourceCapabilities, _Mapping]] = ...) -> None: ...

class ResourceCapabilities(_message.Message):
    __slots__ = ("cpu", "memory", "gpu")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    cpu: CpuResourceCapabilities
    memory: MemoryResourceCapabilities
    gpu: GpuResourceCapabilities
    def __init__(self, cpu: _Optional[_Union[CpuResourceCapabilities, _Mapping]] = ..., memory: _Optional[_Union[MemoryResourceCapabilities, _Mapping]] = ..., gpu: _Optional[_Union[GpuResourceCapabilities, _Mapping]] = ...) -> None: ...

class CpuResourceCapabilities(_message.Message):
    __slots__ = ("limit_supported",)
    LIMIT_SUPPORTED_FIELD_NUMBER: _ClassVar[int]
    limit_supported: bool
    def __init__(self, limit_supported: _Optional[bool] = ...) -> None: ...

class MemoryResourceCapabilities(_message.Message):
    __slots__ = ("limit_supported",)
    LIMIT_SUPPORTED_FIELD_NUMBER: _ClassVar[int]
    limit_supported: bool
    def __init__(self, limit_supported: _Optional[bool] = ...) -> None: ...

class GpuResourceCapabilities(_message.Message):
    __slots__ = ("default_selection_supported", "count_selection_supported")
    DEFAULT_SELECTION_SUPPORTED_FIELD_NUMBER: _ClassVar[int]
    COUNT_SELECTION_SUPPORTED_FIELD_NUMBER: _ClassVar[int]
    default_selection_supported: bool
    count_selection_supported: bool
    def __init__(self, default_selection_supported: _Optional[bool] = ..., count_selection_supported: _Optional[bool] = ...) -> None: ...

class GetCurrentUserRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCurrentUserResponse(_message.Message):
    __slots__ = ("subject", "display_name", "roles", "scopes", "identity_provider")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    subject: str
    display_name: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    scopes: _containers.RepeatedScalarFieldContainer[str]
    identity_provider: str
    def __init__(self, subject: _Optional[str] = ..., display_name: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., scopes: _Optional[_Iterable[str]] = ..., identity_provider: _Optional[str] = ...) -> None: ...
