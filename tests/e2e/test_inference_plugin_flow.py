"""The inference plugin flow exactly as a user does it.

In a fresh virtualenv with only core, the CLI and the isolation plugins:
``openshell inference backends`` does not list vllm; after ``pip install`` of
``openshell-plugins/inference/vllm`` it does, and ``inference set --backend vllm``
routes a sandbox's ``curl https://inference.local/v1/chat/completions`` — streaming
included — to an OpenAI-compatible test server on this host's loopback.

The venv installs third-party dependencies from PyPI (pip's cache makes reruns
fast). Gateway ``inf-flow`` runs from that venv, so its supervisors do too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, Gateway, free_port, require_root
from fakes.model_server import ModelServer

pytestmark = pytest.mark.timeout(900)

CORE_AND_CLI = [
    "openshell-core",
    "openshell-plugins/isolation/netns",
    "openshell-plugins/isolation/landlock",
    "openshell-plugins/isolation/seccomp",
    "openshell-plugins/isolation/opa",
    "openshell-cli",
]


def run(argv, env=None, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout.decode()[-2000:]}\n{proc.stderr.decode()[-4000:]}"
    return proc


def backends(gw: Gateway) -> set[str]:
    return {row["name"] for row in json.loads(gw.cli("inference", "backends", "-o", "json", check=True).stdout)}


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    require_root()
    path = tmp_path_factory.mktemp("inf-venv") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    run([base, "-m", "venv", str(path)])
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    editable = [arg for d in CORE_AND_CLI for arg in ("-e", str(REPO / d))]
    run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", *editable], env=env, timeout=900)
    return path


@pytest.fixture(scope="module")
def gw(venv, tmp_path_factory):
    base = tmp_path_factory.mktemp("inf-flow")
    env = dict(os.environ)
    env.update(
        XDG_CONFIG_HOME=str(base / "config"), XDG_STATE_HOME=str(base / "state"), OPENSHELL_GATEWAY="inf-flow", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}"
    )
    env.pop("OPENSHELL_STATE_DIR", None)
    env.pop("VIRTUAL_ENV", None)
    gw = Gateway(name="inf-flow", port=free_port(), env=env, base=base)
    gw.openshell = str(venv / "bin" / "openshell")  # type: ignore[attr-defined]
    yield gw
    subprocess.run([gw.openshell, "sandbox", "delete", "--all"], env=env, capture_output=True, timeout=120)
    subprocess.run([gw.openshell, "gateway", "stop", "--name", gw.name], env=env, capture_output=True, timeout=60)


def cli(gw, *args, timeout=180):
    return run([gw.openshell, *args], env=gw.env, timeout=timeout)


def test_vllm_appears_after_pip_install_and_routes_a_sandbox(venv, gw):
    names = {row["name"] for row in json.loads(cli(gw, "inference", "backends", "-o", "json").stdout)}
    assert {"openai", "anthropic"} <= names and "vllm" not in names

    plugin = REPO / "openshell-plugins/inference/vllm"
    leftovers = [plugin / "build"] if not (plugin / "build").exists() else []
    try:
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(plugin)], env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    finally:
        for path in leftovers:  # setuptools builds in the source tree
            shutil.rmtree(path, ignore_errors=True)
    rows = {row["name"]: row for row in json.loads(cli(gw, "inference", "backends", "-o", "json").stdout)}
    assert rows["vllm"]["status"] == "loaded" and rows["vllm"]["base_url"] == "http://127.0.0.1:8000/v1"
    assert rows["vllm"]["distribution"] == "openshell-plugin-vllm"

    with ModelServer(reply="vllm says hello", chunk_delay=0.05) as model:
        cli(gw, "gateway", "start", "--name", gw.name, "--port", str(gw.port), timeout=60)
        cli(gw, "inference", "set", "--backend", "vllm", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--base-url", model.base_url)
        check = json.loads(cli(gw, "inference", "backends", "vllm", "--check", "-o", "json").stdout)
        assert check[0]["check"] == "ok" and model.base_url in check[0]["detail"] and "fake-model-1" in check[0]["detail"]
        cli(gw, "sandbox", "create", "--name", "inf-flow", "-d", timeout=180)

        body = json.dumps({"model": "x", "messages": [{"role": "user", "content": "hi"}]})
        out = cli(
            gw,
            "sandbox",
            "exec",
            "inf-flow",
            "--",
            "curl",
            "-sS",
            "--max-time",
            "30",
            "https://inference.local/v1/chat/completions",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ).stdout
        assert json.loads(out)["choices"][0]["message"]["content"] == "vllm says hello"
        assert model.requests[-1].body["model"] == "meta-llama/Llama-3.1-8B-Instruct"

        stream = json.dumps({"stream": True, "messages": [{"role": "user", "content": "hi"}]})
        out = cli(
            gw,
            "sandbox",
            "exec",
            "inf-flow",
            "--",
            "curl",
            "-sS",
            "-N",
            "--max-time",
            "30",
            "https://inference.local/v1/chat/completions",
            "-H",
            "Content-Type: application/json",
            "-d",
            stream,
        ).stdout
        events = [e for e in out.decode().split("\n\n") if e.strip()]
        assert events[-1] == "data: [DONE]" and len(events) >= 5
        text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-1])
        assert text == "vllm says hello"
