#!/usr/bin/env python3
"""Render an OpenShell plugin template into a new directory (stdlib only).

Every ``{{key}}`` in file contents and in file and directory names is replaced.
Values are checked so the result is a valid distribution, entry point and
Python identifier; an unknown ``{{key}}`` left in the template is an error.

Usage::

    python templates/render.py openshell-agent-plugin ./openshell-plugin-hello \\
        --set name=hello --set npm_package=hello-cli --set executable=hello \\
        --set summary="Hello, a demo agent" --set api_host=api.hello.example \\
        --set provider_type=generic

Keys of ``openshell-agent-plugin`` (defaults derived from ``name``):
``name`` (required; lower case, letters/digits/underscore, starts with a letter),
``class_name`` (``HelloAgent``), ``summary``, ``npm_package`` (``name``),
``npm_version`` (``latest``), ``executable`` (``name``), ``api_host``
(``api.<name>.example``), ``provider_type`` (``generic``), ``env_prefix`` (``HELLO``).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")

_CHECKS: dict[str, tuple[str, str]] = {
    "name": (r"[a-z][a-z0-9_]{0,39}", "lower case letters, digits, underscore; starts with a letter"),
    "class_name": (r"[A-Z][A-Za-z0-9]{0,63}", "a CamelCase Python class name"),
    "summary": (r"[^\"\\\n{}]{1,100}", "one line of at most 100 characters without quotes, backslashes or braces"),
    "npm_package": (r"(@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*", "an npm package name"),
    "npm_version": (r"[A-Za-z0-9.^~<>=*|+ -]{1,40}|latest", "an npm version or range"),
    "executable": (r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", "a command name"),
    "api_host": (r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+", "a DNS name without wildcards"),
    "provider_type": (r"[a-z][a-z0-9_-]{0,39}", "a provider type name, e.g. anthropic, openai, generic"),
    "env_prefix": (r"[A-Z][A-Z0-9_]{0,39}", "upper case letters, digits, underscore"),
}


class RenderError(ValueError):
    """A value is invalid, the destination exists, or the template uses an unknown key."""


def defaults(name: str) -> dict[str, str]:
    """Values derived from ``name`` for every key the agent template uses."""
    camel = "".join(part.capitalize() for part in name.split("_"))
    return {
        "name": name,
        "class_name": f"{camel}Agent",
        "summary": f"{camel}, an AI agent",
        "npm_package": name.replace("_", "-"),
        "npm_version": "latest",
        "executable": name.replace("_", "-"),
        "api_host": f"api.{name.replace('_', '-')}.example",
        "provider_type": "generic",
        "env_prefix": name.upper(),
    }


def validate(values: dict[str, str]) -> None:
    """Check every value against its rule; raise :class:`RenderError` naming the key and the rule."""
    for key, value in values.items():
        rule = _CHECKS.get(key)
        if rule is None:
            raise RenderError(f"unknown key {key!r}; known keys: {', '.join(sorted(_CHECKS))}")
        if not re.fullmatch(rule[0], value):
            raise RenderError(f"{key}={value!r} is invalid: expected {rule[1]}")


def _sub(text: str, values: dict[str, str], where: str) -> str:
    def repl(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise RenderError(f"{where}: template uses unknown key {{{{{key}}}}}")
        return values[key]

    return _PLACEHOLDER.sub(repl, text)


def render(template: str, dest: Path, values: dict[str, str]) -> list[Path]:
    """Render ``templates/<template>`` into ``dest`` (which must not exist).

    :param values: key → value; missing keys take :func:`defaults` of ``values["name"]``.
    :returns: the files written.
    :raises RenderError: bad values, an existing ``dest``, or an unknown template/key.
    """
    src = TEMPLATES / template
    if not src.is_dir() or template.startswith((".", "/")) or "/" in template:
        raise RenderError(f"no template {template!r} in {TEMPLATES}")
    if "name" not in values:
        raise RenderError("--set name=NAME is required")
    merged = {**defaults(values["name"]), **values}
    validate(merged)
    if dest.exists():
        raise RenderError(f"{dest} already exists; choose a new directory")
    written: list[Path] = []
    for path in sorted(src.rglob("*")):
        if "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        rel = _sub(str(path.relative_to(src)), merged, str(path))
        out = dest / rel
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(_sub(path.read_text(), merged, str(path)))
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    """``render.py TEMPLATE DEST --set key=value …``; prints the files written. Exit 1 on errors."""
    parser = argparse.ArgumentParser(description="Render an OpenShell plugin template.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("template", help="template directory under templates/, e.g. openshell-agent-plugin")
    parser.add_argument("dest", type=Path, help="new directory to create")
    parser.add_argument("--set", dest="values", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    values: dict[str, str] = {}
    for item in args.values:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r} is not KEY=VALUE")
        values[key] = value
    try:
        files = render(args.template, args.dest, values)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for f in files:
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
