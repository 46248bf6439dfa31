"""Typed, validated form of a sandbox policy (POLICY.md §1).

Instances are produced only by ``openshell.policy.parse_policy`` (which
validates); everything downstream (engine, proxy, isolation layers) reads these
dataclasses, never raw YAML dicts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class FilesystemPolicy:
    """Landlock paths. ``read_only``/``read_write`` are absolute, normalised paths
    *after* the workdir and the §4 baseline were added."""

    include_workdir: bool = True
    read_only: tuple[str, ...] = ()
    read_write: tuple[str, ...] = ()


@dataclass(frozen=True)
class LandlockPolicy:
    compatibility: str = "best_effort"  # best_effort | hard_requirement


@dataclass(frozen=True)
class ProcessPolicy:
    run_as_user: str = "sandbox"
    run_as_group: str = "sandbox"


@dataclass(frozen=True)
class QueryMatcher:
    """One query key's matcher: every value of the key must match one of ``globs``."""

    globs: tuple[str, ...]


@dataclass(frozen=True)
class HttpRule:
    """An allow or deny rule of an inspected endpoint (POLICY.md §3)."""

    method: str = "*"
    path: str = "**"
    query: tuple[tuple[str, QueryMatcher], ...] = ()


@dataclass(frozen=True)
class Endpoint:
    host: str = ""  # lower-case; "" only with allowed_ips
    ports: tuple[int, ...] = ()
    protocol: str = ""  # "" (L4 only) | "rest"
    enforcement: str = "enforce"  # enforce | audit
    access: str = ""  # "" | read-only | read-write | full
    rules: tuple[HttpRule, ...] = ()
    deny_rules: tuple[HttpRule, ...] = ()
    allowed_ips: tuple[str, ...] = ()  # CIDR strings as written
    tls: str = ""  # "" | skip


@dataclass(frozen=True)
class Binary:
    path: str  # exact path or glob


@dataclass(frozen=True)
class NetworkRule:
    key: str
    name: str
    endpoints: tuple[Endpoint, ...] = ()
    binaries: tuple[Binary, ...] = ()


@dataclass(frozen=True)
class Policy:
    """A whole validated policy document."""

    version: int = 1
    filesystem: FilesystemPolicy = field(default_factory=FilesystemPolicy)
    landlock: LandlockPolicy = field(default_factory=LandlockPolicy)
    process: ProcessPolicy = field(default_factory=ProcessPolicy)
    network: tuple[NetworkRule, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return a plain-data dict (JSON-serialisable) of every field."""
        return asdict(self)
