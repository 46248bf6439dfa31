"""Fixtures for the child-launcher tests (test_launch_*.py): real sandboxes on the real kernel.

``launch_sandbox`` builds what a supervisor builds — the sandbox account,
per-sandbox host directories, an ``IsolationContext`` with the policy of
tests/cases/isolation-checks.md, the prepared netns layer — and tears
the namespaces down in a finalizer, also when the test fails. Fixture names
start with ``launch_`` so they never collide with the proxy tests' fixtures.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from openshell.plugin import IsolationContext
from openshell.supervisor import mounts as sbmounts
from openshell.supervisor import users
from openshell.supervisor.launcher import (
    LaunchSpec,
    prepare_layers,
    spawn,
    teardown_layers,
)

ALL_LAYERS = ["netns", "landlock", "seccomp"]
SANDBOX_PYTHON = "/usr/bin/python3"  # inside the read-only /usr; the venv is outside the policy
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/sandbox", "LANG": "C.UTF-8"}

#: the policy of tests/cases/isolation-checks.md
CHECKS_POLICY_YAML = """\
version: 1
filesystem_policy: {include_workdir: true, read_only: [/usr, /lib, /etc, /proc, /dev/urandom], read_write: [/sandbox, /tmp]}
landlock: {compatibility: hard_requirement}
process: {run_as_user: sandbox, run_as_group: sandbox}
network_policies:
  curl_up: {endpoints: [{host: up.example.test, port: 8080, allowed_ips: [10.199.0.0/16]}], binaries: [{path: /usr/bin/curl}]}
"""


def checks_policy(**fs_overrides: Any) -> dict[str, Any]:
    """Return the isolation-checks policy as ``Policy.to_dict()``.

    Uses ``openshell.policy.parse_policy`` when it exists (it adds the §4
    baseline); otherwise builds the model dataclasses with the baseline by hand.
    ``fs_overrides`` replace fields of the filesystem section afterwards
    (``read_only=[...]``, ``compatibility=...`` goes to the landlock section).
    """
    compatibility = fs_overrides.pop("compatibility", None)
    try:
        from openshell.policy import parse_policy  # type: ignore[attr-defined]
    except ImportError:
        parse_policy = None
    if parse_policy is not None:
        data = parse_policy(CHECKS_POLICY_YAML).to_dict()
    else:
        from openshell.policy.model import (
            FilesystemPolicy,
            LandlockPolicy,
            Policy,
            ProcessPolicy,
        )

        ro = [p for p in ["/usr", "/lib", "/etc", "/proc", "/dev/urandom", "/lib64", "/bin"] if os.path.exists(p)]
        rw = ["/sandbox", "/tmp", "/dev/null"]
        data = Policy(
            filesystem=FilesystemPolicy(include_workdir=True, read_only=tuple(ro), read_write=tuple(rw)),
            landlock=LandlockPolicy("hard_requirement"),
            process=ProcessPolicy("sandbox", "sandbox"),
        ).to_dict()
    for key, value in fs_overrides.items():
        data["filesystem"][key] = list(value) if isinstance(value, (list, tuple)) else value
    if compatibility:
        data["landlock"]["compatibility"] = compatibility
    return data


def _free_index() -> int:
    """A 10.200.N index for a test sandbox.

    Each sandbox has its own namespace pair, so even equal indexes would not
    clash; a random one keeps parallel runs' addresses apart for readability.
    """
    return random.randint(100, 250)


@dataclass
class LaunchSandbox:
    """One prepared sandbox for tests.

    :ivar ctx: the prepared ``IsolationContext``.
    :ivar dirs: its host directories (``SandboxDirs``).
    :ivar layers: layers prepared and applied by default.
    """

    ctx: IsolationContext
    dirs: sbmounts.SandboxDirs
    layers: list[str] = field(default_factory=lambda: list(ALL_LAYERS))

    @property
    def sandbox_ip(self) -> str:
        return self.ctx.extra["netns"]["sandbox_ip"]

    @property
    def proxy_ip(self) -> str:
        return self.ctx.extra["netns"]["proxy_ip"]

    @property
    def proxy_netns(self) -> str:
        return self.ctx.extra["netns"]["proxy_netns"]

    def spec(self, argv: Sequence[str], **changes: Any) -> LaunchSpec:
        """A ``LaunchSpec`` for ``argv`` with this sandbox's standard mounts and env."""
        base = {"ctx": self.ctx, "argv": list(argv), "env": dict(SANDBOX_ENV), "mounts": self.dirs.mounts(), "layers": list(self.layers)}
        base.update(changes)
        return LaunchSpec(**base)

    def run(self, argv: Sequence[str], timeout: float = 60, **changes: Any) -> subprocess.CompletedProcess:
        """Launch ``argv`` in the sandbox; return its exit code and text output."""
        proc = spawn(self.spec(argv, **changes), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"sandboxed {argv!r} timed out; stderr: {err.decode(errors='replace')}") from None
        return subprocess.CompletedProcess(argv, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    def py(self, code: str, *args: str, **changes: Any) -> Any:
        """Run Python ``code`` in the sandbox; it must print one JSON document, returned parsed."""
        res = self.run([SANDBOX_PYTHON, "-c", code, *args], **changes)
        assert res.returncode == 0, f"exit {res.returncode}; stderr: {res.stderr}"
        return json.loads(res.stdout)


@pytest.fixture(scope="session")
def launch_root() -> None:
    """Skip unless root: namespaces, mounts and the user drop need it."""
    if os.geteuid() != 0:
        pytest.skip("the child launcher needs root (namespaces, mounts, setuid)")
    if not os.path.exists("/proc/self/ns/net"):
        pytest.skip("kernel without network namespaces")


@pytest.fixture(scope="session")
def launch_ids(launch_root: None) -> tuple[int, int]:
    """``(uid, gid)`` of the ``sandbox`` account (created when absent)."""
    return users.ensure_sandbox_account()


@pytest.fixture
def launch_factory(launch_ids: tuple[int, int]) -> Callable[..., LaunchSandbox]:
    """Factory: ``make(policy=None, layers=ALL_LAYERS, extra_hosts=None, index=None) -> LaunchSandbox``
    (``index``: the netns index; None: a random one of 100..250).

    Every sandbox made is torn down (namespaces deleted, dirs removed) after the test.
    """
    made: list[tuple[LaunchSandbox, str]] = []

    def make(
        policy: dict[str, Any] | None = None, layers: Sequence[str] = ALL_LAYERS, extra_hosts: dict[str, str] | None = None, index: int | None = None
    ) -> LaunchSandbox:
        uid, gid = launch_ids
        # Under the host's /tmp on purpose: the launcher opens every bind source
        # before mounting, so the sandbox's own /tmp mount cannot hide them.
        state = tempfile.mkdtemp(prefix="osb-launch-")
        sandbox_id = uuid.uuid4().hex
        dirs = sbmounts.prepare_sandbox_dirs(state, uid, gid, extra_hosts)
        ctx = IsolationContext(
            sandbox_id=sandbox_id,
            policy=policy if policy is not None else checks_policy(),
            state_dir=state,
            extra={"netns": {"index": index or _free_index()}},
        )
        box = LaunchSandbox(ctx=ctx, dirs=dirs, layers=list(layers))
        made.append((box, state))
        prepare_layers(ctx, [name for name in layers if name in ALL_LAYERS])
        return box

    yield make
    for box, state in made:
        try:
            teardown_layers(box.ctx, [name for name in box.layers if name in ALL_LAYERS])
        finally:
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def launch_checks_policy() -> Callable[..., dict[str, Any]]:
    """The :func:`checks_policy` builder (test modules cannot import conftest)."""
    return checks_policy


@pytest.fixture
def launch_sandbox(launch_factory: Callable[..., LaunchSandbox]) -> LaunchSandbox:
    """One sandbox with the isolation-checks policy and all three layers."""
    return launch_factory()
