"""Fixtures for cross-distribution end-to-end tests.

Everything here is real: a gateway process with mTLS on a loopback port, the
local compute driver, supervisors as root, network namespaces, Landlock and
seccomp. Upstreams are test hosts in network namespaces (DESIGN.md §7).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Test modules import shared helpers from this folder (pytest runs with --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).resolve().parent))
OPENSHELL = str(Path(sys.executable).with_name("openshell"))


CASES = REPO / "tests" / "cases"


def cases_dir() -> Path:
    """The acceptance data folder: ``tests/cases`` (a verbatim copy of the shared cases)."""
    return CASES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, Landlock, seccomp)")


@dataclass
class Gateway:
    """A running gateway and the environment whose client files point at it."""

    name: str
    port: int
    env: dict
    base: Path
    driver: str = "local"

    def cli(self, *args: str, input: bytes | None = None, timeout: float = 180, check: bool = False) -> subprocess.CompletedProcess:
        proc = subprocess.run([OPENSHELL, *args], env=self.env, input=input, capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"openshell {' '.join(args)} exited {proc.returncode}:\n{proc.stdout.decode()}\n{proc.stderr.decode()}")
        return proc

    def sx(self, sandbox: str, *argv: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """``openshell sandbox exec SANDBOX -- ARGV``."""
        return self.cli("sandbox", "exec", sandbox, "--", *argv, input=input, timeout=timeout)

    @property
    def state_dir(self) -> Path:
        return self.base / "state" / "openshell" / "gateways" / self.name


def _start_gateway(base: Path, name: str, driver: str = "local") -> Gateway:
    env = dict(os.environ)
    env.update(XDG_CONFIG_HOME=str(base / "config"), XDG_STATE_HOME=str(base / "state"), OPENSHELL_GATEWAY=name)
    env.pop("OPENSHELL_STATE_DIR", None)
    gw = Gateway(name=name, port=free_port(), env=env, base=base, driver=driver)
    gw.cli("gateway", "start", "--name", name, "--port", str(gw.port), "--driver", driver, check=True, timeout=60)
    return gw


@pytest.fixture(scope="session")
def gateway(tmp_path_factory) -> Gateway:
    require_root()
    base = tmp_path_factory.mktemp("e2e-gateway")
    gw = _start_gateway(base, "e2e")
    yield gw
    gw.cli("sandbox", "delete", "--all", timeout=120)
    gw.cli("gateway", "stop", "--name", gw.name, timeout=60)


@pytest.fixture(scope="session")
def docker_gateway(tmp_path_factory) -> Gateway:
    """A gateway with the ``docker`` compute driver on OpenShell's private Docker Engine
    (started here when it does not run, and stopped again at the end), with the default
    sandbox image built (cached under /var/cache/openshell: minutes once per machine)."""
    require_root()
    from openshell_plugin_docker import dockerd

    started = not dockerd.status()
    dockerd.start()
    base = tmp_path_factory.mktemp("e2e-docker-gateway")
    env = dict(os.environ, XDG_CONFIG_HOME=str(base / "config"), XDG_STATE_HOME=str(base / "state"))
    build = subprocess.run([OPENSHELL, "images", "build"], env=env, capture_output=True, timeout=1200)
    assert build.returncode == 0, build.stderr.decode()[-2000:]
    gw = _start_gateway(base, "e2e-docker", driver="docker")
    yield gw
    gw.cli("sandbox", "delete", "--all", timeout=180)
    gw.cli("gateway", "stop", "--name", gw.name, timeout=60)
    if started:
        dockerd.stop()


@pytest.fixture(scope="module", params=["local", "docker"])
def any_gateway(request) -> Gateway:
    """The session's ``gateway`` (local driver) and then its ``docker_gateway``: a test
    that takes this fixture runs once per compute driver (ids ``[local]``, ``[docker]``;
    select one with ``-k local`` / ``-k docker``). ``.driver`` says which it is."""
    return request.getfixturevalue("gateway" if request.param == "local" else "docker_gateway")


@pytest.fixture(scope="session")
def upstream():
    """Test host for ``up.example.test`` serving HTTP on 8080 (``.ip``).

    Name and address derive from the pid, so two suites running at once on one
    machine do not fight over one namespace or host route.
    """
    require_root()
    from openshell.testhost import TestHost

    slot = 80 + os.getpid() % 40  # 10.199.80-119.x: outside every other suite's range
    with TestHost(f"e2eup{slot}", f"10.199.{slot}.2") as host:
        host.serve_http(8080)
        yield host


def write_policy(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)
