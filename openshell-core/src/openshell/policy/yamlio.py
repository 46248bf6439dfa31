"""Strict YAML loading for policy documents.

Two habits of plain ``yaml.safe_load`` are unsafe for a security policy: a
duplicated key silently wins over the first one, and a syntax error's position
is buried in a long message. Both become :class:`PolicyError` here.
"""

from __future__ import annotations

from typing import Any

import yaml

from openshell.policy.errors import PolicyError

#: policies are small; a bigger document is a mistake or an attack (alias bombs)
MAX_DOCUMENT_BYTES = 1 << 20


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue  # reported by the base constructor below
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_document(source: str | bytes) -> Any:
    """Parse YAML text into plain data.

    :param source: YAML (JSON is YAML too) as text or UTF-8 bytes.
    :returns: the loaded object (``None`` for an empty document).
    :raises PolicyError: field ``document``; for syntax errors the message gives
        the line and column.
    """
    if isinstance(source, bytes):
        if len(source) > MAX_DOCUMENT_BYTES:
            raise PolicyError("document", f"policy is larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError("document", f"policy is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if len(source) > MAX_DOCUMENT_BYTES:
        raise PolicyError("document", f"policy is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        docs = list(yaml.load_all(source, Loader=_StrictLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = exc.problem or exc.context or "syntax error"
        raise PolicyError("document", f"invalid YAML at {where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise PolicyError("document", f"invalid YAML: {exc}") from None
    if len(docs) > 1:
        raise PolicyError("document", "expected one YAML document, found several (remove the extra '---')")
    return docs[0] if docs else None
