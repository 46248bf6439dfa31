"""Errors the CLI prints as one line (no traceback unless ``--debug``)."""

from __future__ import annotations

import click


class CliError(click.ClickException):
    """A user-facing error: the message names the problem and the fix. Exit code 1."""

    exit_code = 1

    def show(self, file=None) -> None:  # noqa: D102 - click API
        click.echo(f"error: {self.format_message()}", err=True)
