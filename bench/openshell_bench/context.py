"""Shared, lazily built pieces of one run (one gateway, one upstream, one sandbox).

Figures ask the context for what they need; whatever was built is torn down
once at the end of the run (``close``), also after a failure or Ctrl-C.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from openshell_bench import env


@dataclass
class Sizes:
    """How big each figure's work is (``--quick`` shrinks everything).

    Byte counts in bytes, durations in seconds.
    """

    bulk_one: int = 1 << 30  # bytes through one tunnel
    bulk_many: int = 1 << 30  # bytes in total through the parallel tunnels
    tunnels: int = 64
    setup_single: int = 300  # connections by one client
    setup_clients: int = 100
    setup_per_client: int = 5
    https_requests: int = 2000
    decide_seconds: float = 1.0
    lifecycle_sandboxes: int = 50
    max_sandboxes: int = 100
    spawn_runs: int = 50
    tui_denials: int = 30  # denied requests timed to the screen
    docker_sandboxes: int = 20  # docker driver: creates timed (--with-docker)
    k8s_sandboxes: int = 10  # kubernetes driver: creates timed (OPENSHELL_BENCH_K8S_GATEWAY)
    docker_hold: int = 10  # docker driver: sandboxes held for the memory figure

    @classmethod
    def quick(cls) -> Sizes:
        """Small sizes for a smoke run (seconds, not minutes)."""
        return cls(
            bulk_one=64 << 20,
            bulk_many=64 << 20,
            tunnels=8,
            setup_single=30,
            setup_clients=10,
            setup_per_client=3,
            https_requests=100,
            decide_seconds=0.2,
            lifecycle_sandboxes=3,
            max_sandboxes=4,
            spawn_runs=5,
            tui_denials=5,
            docker_sandboxes=3,
            docker_hold=2,
            k8s_sandboxes=2,
        )


@dataclass
class Context:
    """Per-run state. ``peers`` limits which peers run (default: all).

    ``with_docker``: the lifecycle figure may install docker.io + debootstrap and
    run a private dockerd for its ``docker run --rm`` peer (``--with-docker``).
    """

    sizes: Sizes
    peers: tuple[str, ...]
    with_docker: bool = False
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _gateway: env.BenchGateway | None = None
    _upstream: object | None = None
    _sandbox: str | None = None

    def gateway(self) -> env.BenchGateway:
        """The run's gateway (started on first use)."""
        if self._gateway is None:
            env.require_root()
            self._gateway = self._stack.enter_context(env.BenchGateway())
        return self._gateway

    def upstream(self):
        """The run's plain-HTTP test host (``bn0-*`` at 10.199.50.2:8080)."""
        if self._upstream is None:
            env.require_root()
            self._upstream = self._stack.enter_context(env.test_host(0))
        return self._upstream

    def net_sandbox(self) -> str:
        """A READY sandbox whose ``python3`` may reach the upstream (raw tunnels)."""
        if self._sandbox is None:
            up = self.upstream()
            gw = self.gateway()
            name = "bench-net"
            gw.create(name, env.network_policy(up.ip), [f"{env.HOST_NAME}:{up.ip}"])
            self._sandbox = name
        return self._sandbox

    def close(self) -> None:
        """Tear down everything built (reverse order)."""
        self._stack.close()
