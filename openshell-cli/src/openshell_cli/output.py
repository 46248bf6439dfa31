"""Rendering of list/get results for ``-o table|json|yaml``."""

from __future__ import annotations

import json
from typing import Any, Sequence

import click
import yaml


def output_option(help: str = "Output format; json and yaml are for scripts.") -> Any:
    """The ``-o/--output table|json|yaml`` option (into the parameter ``output``) with ``help``."""
    return click.option("-o", "--output", "output", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True, help=help)


OUTPUT_OPTION = output_option()


def render(rows: Sequence[dict[str, Any]] | dict[str, Any], output: str, columns: Sequence[str] = (), empty: str = "nothing to show") -> None:
    """Print ``rows`` (a list of records, or one record) in the requested format.

    :param columns: keys shown as table columns (all keys when empty).
    :param empty: the sentence printed for an empty table.
    """
    if output == "json":
        click.echo(json.dumps(rows, indent=2, sort_keys=False, default=str))
        return
    if output == "yaml":
        click.echo(yaml.safe_dump(rows, sort_keys=False).rstrip())
        return
    from rich.console import Console
    from rich.table import Table

    records = [rows] if isinstance(rows, dict) else list(rows)
    if not records:
        click.echo(empty)
        return
    cols = list(columns) or list(records[0].keys())
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in cols:
        table.add_column(col.upper())
    for rec in records:
        table.add_row(*("" if rec.get(c) is None else str(rec.get(c)) for c in cols))
    Console(width=max(80, Console().width)).print(table)


def plural(count: int, word: str, plural_word: str | None = None) -> str:
    """``"1 file"``, ``"2 files"``, ``"0 files"``: ``count`` and ``word`` in the right number."""
    return f"{count} {word if count == 1 else (plural_word or word + 's')}"
