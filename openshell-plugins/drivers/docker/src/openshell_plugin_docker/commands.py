"""``openshell images build|list``: the docker driver's sandbox images (added by ``register_commands``)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click


def _client() -> Any:
    import docker

    from openshell_plugin_docker import dockerd

    try:
        if not os.environ.get("OPENSHELL_DOCKER_HOST"):
            dockerd.start()
        return docker.DockerClient(base_url=dockerd.engine_url(), timeout=600)
    except dockerd.DockerdError as exc:
        raise click.ClickException(str(exc)) from None


def build_image(source: str) -> str:
    """Build a Dockerfile, or a directory holding one, in the local engine; progress on stderr.

    :returns: the image tag (``openshell/built:<hash of the build context>``).
    :raises click.ClickException: the build failed (one line naming the step).
    """
    from openshell_plugin_docker import images

    try:
        return images.build_from(_client(), source, lambda line: click.echo(line, err=True))
    except images.ImageError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("images")
def images_group() -> None:
    """Sandbox images of the docker compute driver.

    \b
    Examples:
      openshell images build          # the default image openshell/sandbox:latest
      openshell images list -o json
    """


@images_group.command("build")
@click.argument("source", required=False)
def build(source: str | None) -> None:
    """Build the default sandbox image, or SOURCE (a Dockerfile or a directory holding one).

    The default image is made with debootstrap from the Debian mirror apt uses
    and `docker import` (no container registry needed); its root file system is
    cached under /var/cache/openshell/images, so a second build is quick.
    """
    from openshell_plugin_docker import images

    client = _client()

    def progress(line: str) -> None:
        click.echo(line, err=True)

    try:
        if source:
            click.echo(images.build_from(client, source, progress))
        else:
            images.build_default(client, progress)
            click.echo(images.DEFAULT_IMAGE)
    except images.ImageError as exc:
        raise click.ClickException(str(exc)) from None


@images_group.command("list")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def list_(output: str) -> None:
    """List the sandbox images the docker driver sees (label openshell.image)."""
    from openshell_plugin_docker import images

    rows = [
        {"image": ", ".join(i.tags) or "<none>", "id": i.id, "kind": i.kind, "size_mb": round(i.size / 2**20), "created": i.created}
        for i in images.list_images(_client())
    ]
    if output == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if not rows:
        click.echo("no sandbox images; build the default one with 'openshell images build'")
        return
    cols = ("image", "id", "kind", "size_mb", "created")
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in cols).rstrip())
    for r in rows:
        click.echo("  ".join(str(r[c]).ljust(widths[c]) for c in cols).rstrip())
