"""Defaults the policy fills in (POLICY.md §1 and §4)."""

from __future__ import annotations

#: the sandbox's working directory, mounted read-write when ``include_workdir``
WORKDIR = "/sandbox"

#: §4 baseline: added when absent from the policy and present on this machine
BASELINE_READ_ONLY: tuple[str, ...] = ("/usr", "/lib", "/lib64", "/bin", "/etc", "/proc", "/dev/urandom")
BASELINE_READ_WRITE: tuple[str, ...] = ("/tmp", "/dev/null")

DEFAULT_USER = "sandbox"
DEFAULT_COMPATIBILITY = "best_effort"

#: enumerated fields and their accepted values (POLICY.md §1)
COMPATIBILITY_VALUES = ("best_effort", "hard_requirement")
PROTOCOL_VALUES = ("rest",)
ENFORCEMENT_VALUES = ("enforce", "audit")
ACCESS_VALUES = ("read-only", "read-write", "full")
TLS_VALUES = ("skip",)

#: §3 access presets: methods allowed on every path
ACCESS_PRESETS: dict[str, tuple[str, ...]] = {
    "read-only": ("GET", "HEAD", "OPTIONS"),
    "read-write": ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"),
    "full": ("*",),
}
