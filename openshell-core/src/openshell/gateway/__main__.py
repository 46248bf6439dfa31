"""Run one gateway in the foreground.

    python -m openshell.gateway --name openshell --port 8080 --driver local [--state-dir DIR]

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 when it cannot start (the reason
is logged as "gateway failed to start: ..." in ``gateway.log``, and on stderr when
logging there: a terminal or ``--log-stderr``).
``openshell gateway start`` runs this detached with output appended to ``gateway.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from openshell.extra_ca import ENV as EXTRA_CA_ENV
from openshell.extra_ca import ExtraCAError, check_extra_ca
from openshell.gateway.paths import (
    DEFAULT_DRIVER,
    DEFAULT_HOST,
    DEFAULT_NAME,
    DEFAULT_PORT,
    InvalidGatewayName,
    gateway_paths,
)
from openshell.gateway.server import Gateway, GatewayError, configure_logging

log = logging.getLogger("openshell.gateway")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openshell.gateway", description="Run an OpenShell gateway in the foreground.")
    parser.add_argument("--name", default=DEFAULT_NAME, help="gateway name (default %(default)s)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port for gRPC and HTTP (default %(default)s)")
    parser.add_argument("--driver", default=DEFAULT_DRIVER, help="compute driver (default %(default)s)")
    parser.add_argument("--state-dir", default=None, help="state directory (default $OPENSHELL_STATE_DIR or XDG)")
    parser.add_argument("--debug", action="store_true", help="debug logging")
    parser.add_argument("--log-stderr", action="store_true", help="also log to stderr (default: only when it is a terminal)")
    args = parser.parse_args(argv)
    try:
        paths = gateway_paths(args.name, args.state_dir).ensure()
    except InvalidGatewayName as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # Detached, stderr already goes to gateway.log and a stderr handler would
    # write every line twice; in the foreground (a terminal, or --log-stderr) it helps.
    configure_logging(paths.log, logging.DEBUG if args.debug else logging.INFO, to_stderr=args.log_stderr or sys.stderr.isatty())
    extra_ca = os.environ.get(EXTRA_CA_ENV)
    if extra_ca:
        try:
            # Every sandbox's start would fail on it: refuse here, with the same message.
            check_extra_ca(extra_ca)
        except ExtraCAError as exc:
            log.error("gateway failed to start: %s", exc)
            return 1
    gateway = Gateway(args.name, args.host, args.port, args.driver, paths.root)
    try:
        asyncio.run(gateway.run())
    except (GatewayError, OSError) as exc:
        # One line in gateway.log ("gateway failed to start: <reason>"), which
        # `openshell gateway start` shows; the stderr handler (if any) shows it too.
        log.error("gateway failed to start: %s", exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
