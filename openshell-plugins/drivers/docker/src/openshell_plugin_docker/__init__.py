"""OpenShell compute driver ``docker``: one Docker container per sandbox.

Registers :class:`~openshell_plugin_docker.driver.DockerDriver` (``openshell.drivers``)
and the ``openshell images build|list`` commands (``register_commands``).
"""

from __future__ import annotations

from typing import Callable

import click
from openshell.plugin import hookimpl


@hookimpl
def register_compute_drivers(register: Callable[[type], None]) -> None:
    from openshell_plugin_docker.driver import DockerDriver

    register(DockerDriver)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from openshell_plugin_docker.commands import images_group

    cli.add_command(images_group)
