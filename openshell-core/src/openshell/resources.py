"""Per-sandbox resource limits: the quantity syntax and the defaults (DESIGN.md §4).

A sandbox's limits come from its spec, ``spec.template.resources`` (a
``google.protobuf.Struct`` in the SDK's schema), in the Kubernetes shape::

    {"limits": {"cpu": "1.5", "memory": "512Mi", "pids": 2048, "tmp": "1Gi", "disk": "10Gi"}}

``cpu`` and ``memory`` are Kubernetes resource quantities; ``pids``, ``tmp``
(size of the sandbox's ``/tmp``) and ``disk`` (size of its workdir,
``/sandbox``) are OpenShell's own keys. A ``requests`` section is accepted (Kubernetes clients
send one) and ignored: nothing is scheduled here. What a spec leaves out gets
:data:`DEFAULTS`.

This module only parses and validates; ``openshell.supervisor.cgroups`` and
``openshell.supervisor.mounts`` enforce.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: binary (Ki = 1024) and decimal (k = 1000) suffixes of Kubernetes quantities;
#: "M", "G" … are decimal, as in Kubernetes ("512M" is 512 000 000 bytes)
_SUFFIX = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)$")
_CPU = re.compile(r"^(?:([0-9]+(?:\.[0-9]{1,3})?|\.[0-9]{1,3})|([0-9]+)m)$")

#: the smallest memory limit accepted: below it not even the launcher (a Python
#: interpreter) starts, and the sandbox would fail in a confusing way
MIN_MEMORY = 16 * 2**20
MIN_TMP = 1 * 2**20
#: the workdir's ext4 needs a few MiB for its metadata and journal
MIN_DISK = 16 * 2**20
#: an image file larger than this does not fit common host file systems (ext4: 16Ti)
MAX_DISK = 8 * 2**40
MAX_BYTES = 2**60
MAX_CPU_MILLI = 1024 * 1000
MAX_PIDS = 4 * 2**20
LIMIT_KEYS = ("cpu", "memory", "pids", "tmp", "disk")


class QuantityError(ValueError):
    """A malformed or out-of-range quantity; the message names the value and the form."""


def parse_bytes(text: str | int | float, *, what: str = "memory", minimum: int = 1) -> int:
    """Parse a Kubernetes byte quantity (``512Mi``, ``512M``, ``1.5Gi``, ``1073741824``).

    :returns: bytes (fractions rounded down).
    :raises QuantityError: malformed, below ``minimum`` bytes, or above 2^60.
    """
    if isinstance(text, bool):
        raise QuantityError(f"{what} {text!r} is not a size")
    if isinstance(text, (int, float)):
        text = format(text, "f").rstrip("0").rstrip(".") if isinstance(text, float) else str(text)
    s = str(text).strip()
    m = _QUANTITY.match(s)
    if not m:
        raise QuantityError(f"{what} {text!r} is not a size; use e.g. 512Mi, 2Gi or 500M")
    number, suffix = m.groups()
    whole, _, frac = number.partition(".")
    scale = _SUFFIX[suffix]
    value = int(whole or "0") * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
    if value < minimum:
        raise QuantityError(f"{what} {text!r} is too small; the minimum is {format_bytes(minimum)}")
    if value > MAX_BYTES:
        raise QuantityError(f"{what} {text!r} is too large")
    return value


def parse_cpu(text: str | int | float) -> int:
    """Parse a CPU quantity in cores (``1.5``, ``0.5``, ``2``) or millicores (``500m``).

    :returns: millicores (1000 = one core), at least 10.
    :raises QuantityError: malformed, more than 3 decimals, below 0.01 or above 1024 cores.
    """
    if isinstance(text, bool):
        raise QuantityError(f"cpu {text!r} is not a number of cores")
    if isinstance(text, float):
        text = format(text, ".3f").rstrip("0").rstrip(".")
    s = str(text).strip()
    m = _CPU.match(s)
    if not m:
        raise QuantityError(f"cpu {text!r} is not a number of cores; use e.g. 1.5, 0.5 or 500m")
    cores, milli = m.groups()
    if milli is not None:
        value = int(milli)
    else:
        whole, _, frac = cores.partition(".")
        value = int(whole or "0") * 1000 + int((frac + "000")[:3])
    if value < 10:
        raise QuantityError(f"cpu {text!r} is too small; the minimum is 0.01 (10m)")
    if value > MAX_CPU_MILLI:
        raise QuantityError(f"cpu {text!r} is too large; the maximum is 1024 cores")
    return value


def parse_pids(value: str | int | float) -> int:
    """Parse a process limit (a positive integer, at most 4Mi).

    :raises QuantityError: not an integer, below 16 or too large.
    """
    if isinstance(value, bool):
        raise QuantityError(f"pids {value!r} is not a number of processes")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    s = str(value).strip()
    if not s.isdigit():
        raise QuantityError(f"pids {value!r} is not a number of processes")
    n = int(s)
    if not 16 <= n <= MAX_PIDS:
        raise QuantityError(f"pids {value!r} is out of range (16..{MAX_PIDS})")
    return n


def format_bytes(n: int) -> str:
    """``536870912`` → ``512Mi`` (exact binary units when they fit, else bytes)."""
    for suffix in ("Pi", "Ti", "Gi", "Mi", "Ki"):
        if n and n % _SUFFIX[suffix] == 0:
            return f"{n // _SUFFIX[suffix]}{suffix}"
    return str(n)


def format_cpu(milli: int) -> str:
    """``1500`` → ``1.5``."""
    return f"{milli / 1000:g}" if milli % 10 == 0 else f"{milli}m"


@dataclass(frozen=True)
class Limits:
    """The limits one sandbox runs with. ``None``: unlimited.

    :ivar cpu_milli: CPU time per wall-clock second, in millicores (1000 = one core).
    :ivar memory: bytes of memory (RSS + page cache + tmpfs pages), no swap beyond it.
    :ivar pids: processes and threads at once.
    :ivar tmp: bytes of the sandbox's ``/tmp`` (a tmpfs).
    :ivar disk: bytes of the sandbox's workdir ``/sandbox`` (an ext4 image, sparse).
    """

    cpu_milli: int | None = None
    memory: int | None = None
    pids: int | None = None
    tmp: int | None = None
    disk: int | None = None

    def describe(self) -> str:
        """``cpu=1.5 memory=512Mi pids=2048 tmp=1Gi disk=10Gi`` (for logs)."""

        def b(v: int | None) -> str:
            return "unlimited" if v is None else format_bytes(v)

        cpu = "unlimited" if self.cpu_milli is None else format_cpu(self.cpu_milli)
        pids = "unlimited" if self.pids is None else str(self.pids)
        return f"cpu={cpu} memory={b(self.memory)} pids={pids} tmp={b(self.tmp)} disk={b(self.disk)}"


#: what a sandbox gets for a limit its spec does not set. The process limit is
#: the usual container-runtime default; memory 8Gi keeps one sandbox from taking
#: the host's memory; /tmp is a 1Gi tmpfs (its pages count against memory too);
#: the workdir a 10Gi ext4 image, sparse: it takes the host's disk only as it fills.
#: CPU is unlimited unless asked for (docs/resources.md).
DEFAULTS = {"cpu": None, "memory": "8Gi", "pids": 2048, "tmp": "1Gi", "disk": "10Gi"}


def validate(resources: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a spec's ``resources`` mapping and return it normalised (JSON-safe).

    :param resources: ``{"limits": {...}, "requests": {...}}`` as in the module docstring.
    :returns: ``{"limits": {key: str}}`` with only the keys that were set
        (requests dropped), ``{}`` for none.
    :raises QuantityError: unknown section or key, or a bad value; the message
        starts with the key (``limits.memory``).
    """
    if not resources:
        return {}
    if not isinstance(resources, Mapping):
        raise QuantityError("resources must be a mapping with 'limits'")
    unknown = set(resources) - {"limits", "requests"}
    if unknown:
        raise QuantityError(f"resources.{sorted(unknown)[0]}: unknown section; use 'limits'")
    out: dict[str, str] = {}
    for section in ("requests", "limits"):
        values = resources.get(section) or {}
        if not isinstance(values, Mapping):
            raise QuantityError(f"resources.{section} must be a mapping")
        for key, value in values.items():
            if key not in LIMIT_KEYS:
                raise QuantityError(f"resources.{section}.{key}: unknown resource; use one of {', '.join(LIMIT_KEYS)}")
            try:
                _parse_one(key, value)
            except QuantityError as exc:
                raise QuantityError(f"resources.{section}.{key}: {exc}") from None
            if section == "limits":
                out[key] = value if isinstance(value, str) else _json_number(value)
    return {"limits": out} if out else {}


def _json_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _parse_one(key: str, value: Any) -> int:
    if key == "cpu":
        return parse_cpu(value)
    if key == "pids":
        return parse_pids(value)
    if key == "disk":
        return parse_disk(value)
    minimum = {"memory": MIN_MEMORY, "tmp": MIN_TMP}[key]
    return parse_bytes(value, what=key, minimum=minimum)


def parse_disk(text: str | int | float) -> int:
    """Parse the workdir size (a byte quantity, 16Mi..8Ti), rounded down to whole
    4 KiB blocks.

    :raises QuantityError: malformed or out of range.
    """
    value = parse_bytes(text, what="disk", minimum=MIN_DISK)
    if value > MAX_DISK:
        raise QuantityError(f"disk {text!r} is too large; the maximum is {format_bytes(MAX_DISK)}")
    return value // 4096 * 4096


def limits_for(resources: Mapping[str, Any] | None) -> Limits:
    """The :class:`Limits` of a (validated) ``resources`` mapping, with :data:`DEFAULTS`
    for what it leaves out.

    :raises QuantityError: as :func:`validate`.
    """
    given = validate(resources).get("limits", {})
    merged = {**DEFAULTS, **given}
    parsed = {k: (None if v is None else _parse_one(k, v)) for k, v in merged.items()}
    return Limits(cpu_milli=parsed["cpu"], memory=parsed["memory"], pids=parsed["pids"], tmp=parsed["tmp"], disk=parsed["disk"])


__all__ = [
    "DEFAULTS",
    "LIMIT_KEYS",
    "Limits",
    "QuantityError",
    "format_bytes",
    "format_cpu",
    "limits_for",
    "parse_bytes",
    "parse_cpu",
    "parse_disk",
    "parse_pids",
    "validate",
]
