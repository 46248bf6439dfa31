"""Strict, bounded YAML loading for policy documents.

Plain ``yaml.safe_load`` is unsafe for a security policy that any client may
send to the gateway:

- aliases (``*a``) share one object many times over, so a 600-byte document
  can stand for gigabytes once anything walks, prints or copies it: anchors
  and aliases are refused;
- nesting is composed recursively: past a few hundred levels Python fails with
  "maximum recursion depth exceeded" and no position: depth is capped;
- YAML 1.1 reads ``7:23`` as 443 (base 60), ``0755`` as octal and ``yes`` as
  true: scalars resolve with the YAML 1.2 core schema instead;
- a duplicated key silently wins over the first one;
- control characters give a multi-line reader error.

Every problem becomes a one-line :class:`PolicyError` naming the field path.
"""

from __future__ import annotations

import re
from typing import Any, cast

import yaml
from yaml.events import AliasEvent, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from openshell.policy.errors import PolicyError

#: policies are small; a bigger document is a mistake or an attack (checked before parsing)
MAX_DOCUMENT_BYTES = 1 << 20
#: nesting levels of mappings/sequences; the deepest valid policy field
#: (``network_policies.k.endpoints[0].rules[0].allow.query.k.any[0]``) uses 9
MAX_DEPTH = 32
#: characters of one key shown in a field path
_MAX_KEY_SHOWN = 64

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution)
_NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
# What the YAML reader refuses anyway, found first so the error is one line with a field.
_RAW_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")
# In loaded strings (keys and values) nothing below space is useful; tab included.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class _Refused(Exception):
    """Raised while composing; carries the field path and a message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _key_text(node: Node | None) -> str:
    if isinstance(node, ScalarNode):
        text = _CONTROL_RE.sub("?", node.value)
        return text if len(text) <= _MAX_KEY_SHOWN else text[:_MAX_KEY_SHOWN] + "…"
    return "?"


def format_path(parts: list[str]) -> str:
    """Join path parts (``"key"`` or ``"[i]"``) as ``a.b[0].c``; ``document`` for the root."""
    out = ""
    for p in parts:
        out += p if p.startswith("[") or not out else "." + p
    return out or "document"


class _Resolver(yaml.resolver.BaseResolver):
    """YAML 1.2 core schema: no base 60, no 1.1 octal, no yes/no/on/off, no timestamps, no merge keys."""


for _tag, _re, _first in (
    (_BOOL, _BOOL_RE, "tTfF"),
    (_INT, _INT_RE, "-+0123456789"),
    (_FLOAT, _FLOAT_RE, "-+0123456789."),
    (_NULL, _NULL_RE, ["~", "n", "N", ""]),
):
    _Resolver.add_implicit_resolver(_tag, _re, list(_first))


def _construct_int(loader: yaml.BaseLoader, node: ScalarNode) -> int:
    v = loader.construct_scalar(node)
    if not _INT_RE.match(v):
        raise yaml.constructor.ConstructorError(None, None, f"{v[:40]!r} is not a YAML 1.2 integer", node.start_mark)
    if v.startswith("0o"):
        return int(v[2:], 8)
    if v.startswith("0x"):
        return int(v[2:], 16)
    return int(v, 10)


def _construct_float(loader: yaml.BaseLoader, node: ScalarNode) -> float:
    v = loader.construct_scalar(node)
    if not _FLOAT_RE.match(v) and not _INT_RE.match(v):
        raise yaml.constructor.ConstructorError(None, None, f"{v[:40]!r} is not a YAML 1.2 number", node.start_mark)
    low = v.lower()
    if low.endswith(".inf"):
        return float("-inf") if low.startswith("-") else float("inf")
    if low == ".nan":
        return float("nan")
    return float(_construct_int(loader, node)) if _INT_RE.match(v) else float(v)


def _construct_bool(loader: yaml.BaseLoader, node: ScalarNode) -> bool:
    v = loader.construct_scalar(node)
    if not _BOOL_RE.match(v):
        raise yaml.constructor.ConstructorError(None, None, f"{v[:40]!r} is not true or false", node.start_mark)
    return v.lower() == "true"


def _construct_null(loader: yaml.BaseLoader, node: ScalarNode) -> None:
    loader.construct_scalar(node)
    return None


def _construct_str(loader: yaml.BaseLoader, node: ScalarNode) -> str:
    return loader.construct_scalar(node)


def _construct_seq(loader: yaml.BaseLoader, node: SequenceNode) -> list:
    return [loader.construct_object(child, deep=True) for child in node.value]


def _construct_map(loader: yaml.BaseLoader, node: MappingNode) -> dict:
    out: dict[Any, Any] = {}
    first: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, "mapping keys must be scalars", key_node.start_mark) from None
        if key in first:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {_key_text(key_node)!r} (first at line {first[key] + 1})", key_node.start_mark)
        first[key] = key_node.start_mark.line
        out[key] = loader.construct_object(value_node, deep=True)
    return out


def _construct_refused(loader: yaml.BaseLoader, node: Node) -> Any:
    raise yaml.constructor.ConstructorError(None, None, f"tag {node.tag[:60]!r} is not accepted in policies", node.start_mark)


class _StrictLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer, yaml.constructor.BaseConstructor, _Resolver):
    """Loader with the YAML 1.2 core schema, no aliases, capped depth, strict keys.

    Tracks the path of the node being composed so refusals name the field.
    """

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.BaseConstructor.__init__(self)
        _Resolver.__init__(self)
        self.path: list[str] = []
        #: (start index, end index, path) of every node, when ``record`` is set
        self.record: list[tuple[int, int, str]] | None = None

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if isinstance(parent, SequenceNode):
            part = f"[{index}]"
        elif isinstance(parent, MappingNode) and isinstance(index, Node):
            part = _key_text(index)
        else:
            part = None  # the root, or a mapping key (reported at its mapping)
        if part is not None:
            self.path.append(part)
        try:
            event = self.peek_event()
            if isinstance(event, AliasEvent):
                raise _Refused(format_path(self.path), "YAML aliases (*name) are not accepted in policies; write the value out")
            if getattr(event, "anchor", None) is not None:
                raise _Refused(format_path(self.path), "YAML anchors (&name) are not accepted in policies; write the value out")
            if not isinstance(event, ScalarEvent) and len(self.path) >= MAX_DEPTH:
                raise _Refused(format_path(self.path[:MAX_DEPTH]), f"nested deeper than {MAX_DEPTH} levels; a policy never needs that")
            # PyYAML's stubs say Optional, but a node is always composed here:
            # alias events (the only other path) are refused above.
            node = cast(Node, super().compose_node(parent, index))
            if self.record is not None:
                # children are recorded before their parent: the first match is the innermost
                path = self.path + [_key_text(node)] if part is None and isinstance(parent, MappingNode) else self.path
                self.record.append((node.start_mark.index, node.end_mark.index, format_path(path)))
            return node
        finally:
            if part is not None:
                self.path.pop()


_StrictLoader.yaml_constructors = {
    _STR: _construct_str,
    _INT: _construct_int,
    _FLOAT: _construct_float,
    _BOOL: _construct_bool,
    _NULL: _construct_null,
    _SEQ: _construct_seq,
    _MAP: _construct_map,
    None: _construct_refused,
}


def _path_of_index(source: str, index: int) -> str:
    """Field path of the innermost node covering character ``index`` (``document`` if unknown).

    Composes a copy with control characters replaced; used only to word an error.
    """
    loader = _StrictLoader(_RAW_CONTROL_RE.sub("_", source))
    loader.record = []
    try:
        loader.get_single_node()
    except Exception:  # the copy may not parse either; fall back to the line/column
        pass
    finally:
        loader.dispose()
    for start, end, path in loader.record:
        if start <= index < max(end, start + 1):
            return path
    return "document"


def _line_col(source: str, index: int) -> str:
    line = source.count("\n", 0, index) + 1
    col = index - (source.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {col}"


def check_strings(value: Any, path: list[str] | None = None) -> None:
    """Refuse control characters in any loaded string (keys and values).

    :raises PolicyError: naming the field path of the first one found.
    """
    path = path or []
    if isinstance(value, str):
        m = _CONTROL_RE.search(value)
        if m:
            raise PolicyError(format_path(path), f"contains control character U+{ord(m.group()):04X}; remove it")
    elif isinstance(value, dict):
        for k, v in value.items():
            key = k if isinstance(k, str) else str(k)
            shown = _CONTROL_RE.sub("?", key)[:_MAX_KEY_SHOWN]
            if isinstance(k, str) and (km := _CONTROL_RE.search(k)):
                raise PolicyError(format_path([*path, shown]), f"key contains control character U+{ord(km.group()):04X}; remove it")
            check_strings(v, [*path, shown])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_strings(v, [*path, f"[{i}]"])


def load_document(source: str | bytes) -> Any:
    """Parse YAML text into plain data (YAML 1.2 core schema, no aliases).

    :param source: YAML (JSON is YAML too) as text or UTF-8 bytes, at most
        :data:`MAX_DOCUMENT_BYTES` bytes (checked before parsing).
    :returns: the loaded object (``None`` for an empty document): dicts, lists,
        str, int, float, bool, None only.
    :raises PolicyError: one line each; ``.field`` is the path of the offending
        node (``network_policies.a.endpoints[0].allowed_ips``) or ``document``
        for the document as a whole, with the line and column where known.
    """
    if isinstance(source, bytes):
        if len(source) > MAX_DOCUMENT_BYTES:
            raise PolicyError("document", f"policy is larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError("document", f"policy is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    elif len(source) > MAX_DOCUMENT_BYTES or len(source.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise PolicyError("document", f"policy is larger than {MAX_DOCUMENT_BYTES} bytes")
    m = _RAW_CONTROL_RE.search(source)
    if m:
        where = _line_col(source, m.start())
        raise PolicyError(_path_of_index(source, m.start()), f"control character U+{ord(m.group()):04X} at {where}; remove it")
    loader = _StrictLoader(source)
    try:
        node = loader.get_single_node()
        doc = loader.construct_document(node) if node is not None else None
    except _Refused as exc:
        raise PolicyError(exc.field, exc.message) from None
    except yaml.composer.ComposerError as exc:
        if "another document" in str(exc.problem or ""):
            raise PolicyError("document", "expected one YAML document, found several (remove the extra '---')") from None
        raise PolicyError(_field_of(source, loader.path, exc), _marked(exc)) from None
    except yaml.MarkedYAMLError as exc:
        raise PolicyError(_field_of(source, loader.path, exc), _marked(exc)) from None
    except yaml.YAMLError as exc:
        raise PolicyError(format_path(loader.path), "invalid YAML: " + " ".join(str(exc).split())[:200]) from None
    finally:
        loader.dispose()
    check_strings(doc)
    return doc


def _field_of(source: str, path: list[str], exc: yaml.MarkedYAMLError) -> str:
    # Composer errors happen with the path still set; constructor errors after
    # composition, so find the node by the error's position instead.
    if path:
        return format_path(path)
    mark = exc.problem_mark or exc.context_mark
    return _path_of_index(source, mark.index) if mark is not None else "document"


def _marked(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
    problem = " ".join((exc.problem or exc.context or "syntax error").split())
    return f"invalid YAML at {where}: {problem}"
