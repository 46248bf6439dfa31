# ruff: noqa
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NetworkTlsMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NETWORK_TLS_MODE_UNSPECIFIED: _ClassVar[NetworkTlsMode]
    NETWORK_TLS_MODE_SKIP: _ClassVar[NetworkTlsMode]
    NETWORK_TLS_MODE_TERMINATE: _ClassVar[NetworkTlsMode]
    NETWORK_TLS_MODE_PASSTHROUGH: _ClassVar[NetworkTlsMode]

class NetworkEnforcementMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NETWORK_ENFORCEMENT_MODE_UNSPECIFIED: _ClassVar[NetworkEnforcementMode]
    NETWORK_ENFORCEMENT_MODE_ENFORCE: _ClassVar[NetworkEnforcementMode]
    NETWORK_ENFORCEMENT_MODE_AUDIT: _ClassVar[NetworkEnforcementMode]

class NetworkAccessPreset(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NETWORK_ACCESS_PRESET_UNSPECIFIED: _ClassVar[NetworkAccessPreset]
    NETWORK_ACCESS_PRESET_READ_ONLY: _ClassVar[NetworkAccessPreset]
    NETWORK_ACCESS_PRESET_READ_WRITE: _ClassVar[NetworkAccessPreset]
    NETWORK_ACCESS_PRESET_FULL: _ClassVar[NetworkAccessPreset]
NETWORK_TLS_MODE_UNSPECIFIED: NetworkTlsMode
NETWORK_TLS_MODE_SKIP: NetworkTlsMode
NETWORK_TLS_MODE_TERMINATE: NetworkTlsMode
NETWORK_TLS_MODE_PASSTHROUGH: NetworkTlsMode
NETWORK_ENFORCEMENT_MODE_UNSPECIFIED: NetworkEnforcementMode
NETWORK_ENFORCEMENT_MODE_ENFORCE: NetworkEnforcementMode
NETWORK_ENFORCEMENT_MODE_AUDIT: NetworkEnforcementMode
NETWORK_ACCESS_PRESET_UNSPECIFIED: NetworkAccessPreset
NETWORK_ACCESS_PRESET_READ_ONLY: NetworkAccessPreset
NETWORK_ACCESS_PRESET_READ_WRITE: NetworkAccessPreset
NETWORK_ACCESS_PRESET_FULL: NetworkAccessPreset

class SandboxPolicy(_message.Message):
    __slots__ = ("version", "filesystem", "landlock", "process", "network_policies")
    class NetworkPoliciesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: NetworkPolicyRule
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[NetworkPolicyRule, _Mapping]] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FILESYSTEM_FIELD_NUMBER: _ClassVar[int]
    LANDLOCK_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_POLICIES_FIELD_NUMBER: _ClassVar[int]
    version: int
    filesystem: FilesystemPolicy
    landlock: LandlockPolicy
    process: ProcessPolicy
    network_policies: _containers.MessageMap[str, NetworkPolicyRule]
    def __init__(self, version: _Optional[int] = ..., filesystem: _Optional[_Union[FilesystemPolicy, _Mapping]] = ..., landlock: _Optional[_Union[LandlockPolicy, _Mapping]] = ..., process: _Optional[_Union[ProcessPolicy, _Mapping]] = ..., network_policies: _Optional[_Mapping[str, NetworkPolicyRule]] = ...) -> None: ...

class FilesystemPolicy(_message.Message):
    __slots__ = ("include_workdir", "read_only", "read_write")
    INCLUDE_WORKDIR_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    READ_WRITE_FIELD_NUMBER: _ClassVar[int]
    include_workdir: bool
    read_only: _containers.RepeatedScalarFieldContainer[str]
    read_write: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, include_workdir: _Optional[bool] = ..., read_only: _Optional[_Iterable[str]] = ..., read_write: _Optional[_Iterable[str]] = ...) -> None: ...

class LandlockPolicy(_message.Message):
    __slots__ = ("compatibility",)
    COMPATIBILITY_FIELD_NUMBER: _ClassVar[int]
    compatibility: str
    def __init__(self, compatibility: _Optional[str] = ...) -> None: ...

class ProcessPolicy(_message.Message):
    __slots__ = ("run_as_user", "run_as_group")
    RUN_AS_USER_FIELD_NUMBER: _ClassVar[int]
    RUN_AS_GROUP_FIELD_NUMBER: _ClassVar[int]
    run_as_user: str
    run_as_group: str
    def __init__(self, run_as_user: _Optional[str] = ..., run_as_group: _Optional[str] = ...) -> None: ...

class NetworkPolicyRule(_message.Message):
    __slots__ = ("name", "endpoints", "binaries")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    BINARIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    endpoints: _containers.RepeatedCompositeFieldContainer[NetworkEndpoint]
    binaries: _containers.RepeatedCompositeFieldContainer[NetworkBinary]
    def __init__(self, name: _Optional[str] = ..., endpoints: _Optional[_Iterable[_Union[NetworkEndpoint, _Mapping]]] = ..., binaries: _Optional[_Iterable[_Union[NetworkBinary, _Mapping]]] = ...) -> None: ...

class NetworkEndpoint(_message.Message):
    __slots__ = ("host", "port", "protocol", "tls", "enforcement", "access", "rules", "allowed_ips", "ports", "deny_rules")
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_IPS_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    DENY_RULES_FIELD_NUMBER: _ClassVar[int]
    host: str
    port: int
    protocol: str
    tls: NetworkTlsMode
    enforcement: NetworkEnforcementMode
    access: NetworkAccessPreset
    rules: _containers.RepeatedCompositeFieldContainer[L7Rule]
    allowed_ips: _containers.RepeatedScalarFieldContainer[str]
    ports: _containers.RepeatedScalarFieldContainer[int]
    deny_rules: _containers.RepeatedCompositeFieldContainer[L7DenyRule]
    def __init__(self, host: _Optional[str] = ..., port: _Optional[int] = ..., protocol: _Optional[str] = ..., tls: _Optional[_Union[NetworkTlsMode, str]] = ..., enforcement: _Optional[_Union[NetworkEnforcementMode, str]] = ..., access: _Optional[_Union[NetworkAccessPreset, str]] = ..., rules: _Optional[_Iterable[_Union[L7Rule, _Mapping]]] = ..., allowed_ips: _Optional[_Iterable[str]] = ..., ports: _Optional[_Iterable[int]] = ..., deny_rules: _Optional[_Iterable[_Union[L7DenyRule, _Mapping]]] = ...) -> None: ...

class L7Rule(_message.Message):
    __slots__ = ("allow",)
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    allow: L7Allow
    def __init__(self, allow: _Optional[_Union[L7Allow, _Mapping]] = ...) -> None: ...

class L7Allow(_message.Message):
    __slots__ = ("method", "path", "query")
    class QueryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: L7QueryMatcher
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[L7QueryMatcher, _Mapping]] = ...) -> None: ...
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    method: str
    path: str
    query: _containers.MessageMap[str, L7QueryMatcher]
    def __init__(self, method: _Optional[str] = ..., path: _Optional[str] = ..., query: _Optional[_Mapping[str, L7QueryMatcher]] = ...) -> None: ...

class L7QueryMatcher(_message.Message):
    __slots__ = ("glob", "any")
    GLOB_FIELD_NUMBER: _ClassVar[int]
    ANY_FIELD_NUMBER: _ClassVar[int]
    glob: str
    any: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, glob: _Optional[str] = ..., any: _Optional[_Iterable[str]] = ...) -> None: ...

class L7DenyRule(_message.Message):
    __slots__ = ("method", "path", "query")
    class QueryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: L7QueryMatcher
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[L7QueryMatcher, _Mapping]] = ...) -> None: ...
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    method: str
    path: str
    query: _containers.MessageMap[str, L7QueryMatcher]
    def __init__(self, method: _Optional[str] = ..., path: _Optional[str] = ..., query: _Optional[_Mapping[str, L7QueryMatcher]] = ...) -> None: ...

class NetworkBinary(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...
