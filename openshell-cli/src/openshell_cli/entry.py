"""The ``openshell`` console script: Ctrl-C at any moment, even while the CLI's
modules are still being imported, ends it with exit code 130 and no traceback."""

from __future__ import annotations

import sys


def main() -> None:
    """Import the CLI and run it (:func:`openshell_cli.main.main`)."""
    from openshell_cli import interrupts  # (signal, threading: nothing slow)

    interrupts.install()
    try:
        from openshell_cli.main import main as run
    except KeyboardInterrupt:
        sys.stderr.write("aborted\n")
        sys.exit(130)
    run()
