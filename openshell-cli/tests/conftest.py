"""Helpers shared by the CLI tests (as session fixtures: test modules here are
imported by path, so they cannot import this file)."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from openshell.gateway.paths import GatewayPaths
from openshell.gateway.server import read_pid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_gateways(state_home: Path) -> None:
    """SIGKILL every gateway whose state lives under ``state_home`` and wait (up to
    5 s each) until its pid file is released."""
    gateways = state_home / "openshell" / "gateways"
    for root in gateways.glob("*") if gateways.is_dir() else []:
        pid = read_pid(GatewayPaths(root))
        if pid:
            os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                if read_pid(GatewayPaths(root)) is None:
                    break
                time.sleep(0.05)


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """``free_port() -> int``: a free TCP port on 127.0.0.1 (racy by nature)."""
    return _free_port


@pytest.fixture(scope="session")
def kill_gateways() -> Callable[[Path], None]:
    """``kill_gateways(state_home)``: stop every gateway started under an XDG state home."""
    return _kill_gateways
