"""inference.local end to end: a sandbox's curl reaches a fake model server on the
host's loopback through the supervisor's router — TLS with the sandbox CA, model and auth
rewritten, SSE streamed, wrong paths refused, backend failures reported, routes switched live.

Own gateway (``inf-e2e``) so the route never leaks into other modules' sandboxes. The fake
model server listens on 127.0.0.1 in this process: the router runs in the supervisor, in the
root namespace, so loopback is reachable by it while the sandbox itself has no route there.
Sandbox names start with ``inf-``.
"""

from __future__ import annotations

import json
import socket

import pytest
from conftest import _start_gateway, require_root
from fakes.model_server import ModelServer

pytestmark = pytest.mark.timeout(300)

CHAT = json.dumps({"model": "ignored-by-router", "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture(scope="module")
def model():
    with ModelServer(reply="routed through inference local") as srv:
        yield srv


@pytest.fixture(scope="module")
def gw(tmp_path_factory, model):
    require_root()
    gw = _start_gateway(tmp_path_factory.mktemp("inf-e2e"), "inf-e2e")
    try:
        gw.cli("provider", "create", "--name", "inf-key", "--type", "openai", "--credential", "OPENAI_API_KEY=sk-backend-123", check=True)
        gw.cli("inference", "set", "--backend", "openai", "--model", "served-model", "--base-url", model.base_url, "--provider", "inf-key", check=True)
        gw.cli("sandbox", "create", "--name", "inf-box", "-d", check=True, timeout=120)
        yield gw
    finally:
        gw.cli("sandbox", "delete", "--all", timeout=120)
        gw.cli("gateway", "stop", "--name", gw.name, timeout=60)


def curl(gw, *args: str, timeout: float = 60):
    return gw.sx("inf-box", "curl", "-sS", "--max-time", "30", *args, timeout=timeout)


def test_route_is_stored_and_shown_without_credentials(gw, model):
    out = json.loads(gw.cli("inference", "get", "-o", "json", check=True).stdout)
    assert out == {
        "backend": "openai",
        "model": "served-model",
        "base_url": model.base_url,
        "provider": "inf-key",
        "protocols": ["openai"],
        "revision": out["revision"],
    }
    assert b"sk-backend-123" not in gw.cli("provider", "get", "inf-key", "-o", "yaml", check=True).stdout


def test_chat_completion_over_https_inference_local(gw, model):
    proc = curl(
        gw,
        "https://inference.local/v1/chat/completions",
        "-H",
        "Content-Type: application/json",
        "-H",
        "Authorization: Bearer sandbox-made-this-up",
        "-d",
        CHAT,
    )
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["choices"][0]["message"]["content"] == "routed through inference local"
    seen = model.requests[-1]
    assert seen.path == "/v1/chat/completions" and seen.body["model"] == "served-model"
    assert seen.headers["Authorization"] == "Bearer sk-backend-123"


def test_streaming_arrives_as_sse_with_done(gw, model):
    stream = json.dumps({"stream": True, "messages": [{"role": "user", "content": "hi"}]})
    proc = curl(gw, "-N", "https://inference.local/chat/completions", "-H", "Content-Type: application/json", "-d", stream)
    assert proc.returncode == 0, proc.stderr
    events = [e for e in proc.stdout.decode().split("\n\n") if e.strip()]
    assert events[-1] == "data: [DONE]"
    text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == "routed through inference local"


def test_models_head_and_plain_http(gw):
    assert b"fake-model-1" in curl(gw, "https://inference.local/v1/models").stdout
    head = curl(gw, "-I", "https://inference.local/")
    assert b"200" in head.stdout.splitlines()[0]
    plain = curl(gw, "http://inference.local/v1/embeddings", "-H", "Content-Type: application/json", "-d", '{"input": "x"}')
    assert json.loads(plain.stdout)["data"][0]["embedding"] == [0.1, 0.2, 0.3]


def test_other_paths_get_403_json_naming_the_path(gw):
    proc = curl(gw, "-w", "\n%{http_code}", "https://inference.local/v1/files")
    body, code = proc.stdout.rsplit(b"\n", 1)
    assert code == b"403"
    assert json.loads(body)["path"] == "/v1/files"


def test_route_change_applies_without_restart_and_backend_down_is_502(gw, model):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    try:
        gw.cli("inference", "set", "--backend", "openai", "--model", "m2", "--base-url", f"http://127.0.0.1:{dead}/v1", check=True)
        proc = None
        for _ in range(20):  # the bundle reaches the supervisor within a moment
            proc = curl(gw, "-w", "\n%{http_code}", "https://inference.local/v1/chat/completions", "-d", CHAT)
            if proc.stdout.endswith(b"502"):
                break
        body, code = proc.stdout.rsplit(b"\n", 1)
        assert code == b"502" and json.loads(body)["error"] == "inference_backend_unavailable"
    finally:
        gw.cli("inference", "set", "--backend", "openai", "--model", "served-model", "--base-url", model.base_url, "--provider", "inf-key", check=True)
    for _ in range(20):
        proc = curl(gw, "https://inference.local/v1/chat/completions", "-d", CHAT)
        if proc.returncode == 0 and b"choices" in proc.stdout:
            break
    assert model.requests[-1].body["model"] == "served-model"


def test_the_sandbox_cannot_reach_the_backend_directly(gw, model):
    port = model.base_url.split(":")[2].split("/")[0]
    before = len(model.requests)
    direct = curl(gw, "-w", "\n%{http_code}", f"http://127.0.0.1:{port}/v1/models", "--noproxy", "*")  # no route out
    via_proxy = curl(gw, "-w", "\n%{http_code}", f"http://127.0.0.1:{port}/v1/models", "--noproxy", "")  # loopback blocked
    assert direct.returncode != 0
    assert via_proxy.stdout.endswith(b"403")
    assert len(model.requests) == before
