"""The background process behind ``openshell forward start`` (one per forwarded port).

    python -m openshell_cli.forwarder --name NAME --port PORT --bind 127.0.0.1 --state FILE [--gateway GW]

It opens one SSH transport to the sandbox through the gateway (checked before
anything else, so a bad sandbox name fails ``start``), listens on BIND:PORT,
and turns every accepted connection into a ``direct-tcpip`` channel to
127.0.0.1:PORT inside the sandbox's network namespace. It writes FILE (JSON:
pid, name, port, bind, gateway) only once the listener is up, and removes it
when it stops (SIGTERM/SIGINT). A dead transport is re-opened with a new
session token on the next connection.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("openshell.cli.forward")

BACKLOG = 64
MAX_CONNECTIONS = 256  # open forwarded connections at once; beyond it new ones are closed


class Forwarder:
    """Listener + SSH transport for one forwarded port.

    :param name: sandbox name. :param port: port inside the sandbox (and our listening port).
    :param bind: local address to listen on. :param gateway: gateway name or None (the active one).
    """

    def __init__(self, name: str, port: int, bind: str, gateway: str | None) -> None:
        self.name, self.port, self.bind, self.gateway = name, port, bind, gateway
        from openshell_cli.version_check import client

        self.client = client(gateway)
        self.transport = None
        self.lock = threading.Lock()
        self.active = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.listener: socket.socket | None = None
        self.stopping = threading.Event()

    def _transport(self):
        from openshell.client.ssh_tunnel import open_ssh_transport

        with self.lock:
            if self.transport is None or not self.transport.is_active():
                if self.transport is not None:
                    self.transport.close()
                self.transport = open_ssh_transport(self.client, self.name)
            return self.transport

    def listen(self) -> None:
        """Check the sandbox is reachable over SSH, then bind and listen. Raises on failure."""
        self._transport()
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.bind, self.port))
        sock.listen(BACKLOG)
        self.listener = sock

    def serve(self) -> None:
        """Accept until :meth:`stop`; each connection is bridged in its own thread."""
        assert self.listener is not None
        while not self.stopping.is_set():
            try:
                conn, peer = self.listener.accept()
            except OSError:
                return
            if not self.active.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._handle, args=(conn, peer), daemon=True).start()

    def _handle(self, conn: socket.socket, peer) -> None:
        from openshell.supervisor.ssh_server import bridge

        try:
            try:
                chan = self._transport().open_channel("direct-tcpip", ("127.0.0.1", self.port), (str(peer[0]), int(peer[1])), timeout=15)
            except Exception as exc:  # noqa: BLE001 - one failed connection must not stop the forward
                log.warning("forward connection failed port=%d reason=%s", self.port, exc)
                conn.close()
                return
            bridge(chan, conn)
        finally:
            self.active.release()

    def stop(self) -> None:
        self.stopping.set()
        if self.listener is not None:
            self.listener.close()
        if self.transport is not None:
            self.transport.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openshell-forwarder")
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--gateway")
    parser.add_argument("--state", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    state = Path(args.state)
    fwd = Forwarder(args.name, args.port, args.bind, args.gateway)
    try:
        fwd.listen()
    except Exception as exc:  # noqa: BLE001 - the parent shows this one line
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: fwd.stop())
    signal.signal(signal.SIGINT, lambda *_: fwd.stop())
    tmp = state.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"pid": os.getpid(), "name": args.name, "port": args.port, "bind": args.bind, "gateway": args.gateway or "", "started": time.time()})
    )
    os.replace(tmp, state)
    log.info("forwarding %s:%d -> sandbox %s 127.0.0.1:%d", args.bind, args.port, args.name, args.port)
    try:
        fwd.serve()
    finally:
        fwd.stop()
        try:
            if json.loads(state.read_text()).get("pid") == os.getpid():
                state.unlink()
        except (OSError, ValueError):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
