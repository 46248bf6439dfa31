"""The agent plugin template renders a plugin that installs and passes its own tests.

What a third party does: render ``templates/openshell-agent-plugin``, ``pip install``
the result into a fresh virtualenv next to ``openshell-core`` only (plugins never
depend on the CLI), and run the rendered plugin's tests there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RENDER = REPO / "templates" / "render.py"
VALUES = [
    "name=acme_bot",
    "summary=Acme Bot, a demo coding agent",
    "npm_package=@acme/bot-cli",
    "npm_version=1.2.3",
    "executable=acme-bot",
    "api_host=api.acme.example",
    "provider_type=openai",
]


def _render(dest: Path, *values: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(RENDER), "openshell-agent-plugin", str(dest)]
    for v in values:
        args += ["--set", v]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OPENSHELL_") and k not in {"PYTHONPATH", "VIRTUAL_ENV"}}


def test_render_refuses_bad_values_and_existing_directories(tmp_path):
    bad = _render(tmp_path / "x", "name=Bad Name")
    assert bad.returncode == 1 and "name='Bad Name' is invalid" in bad.stderr
    quote = _render(tmp_path / "y", "name=ok", 'summary=say "hi"')
    assert quote.returncode == 1 and "summary=" in quote.stderr
    (tmp_path / "exists").mkdir()
    taken = _render(tmp_path / "exists", "name=ok")
    assert taken.returncode == 1 and "already exists" in taken.stderr


def test_rendered_plugin_has_the_first_party_layout_and_no_placeholders(tmp_path):
    dest = tmp_path / "openshell-plugin-acme_bot"
    proc = _render(dest, *VALUES)
    assert proc.returncode == 0, proc.stderr
    for rel in ("pyproject.toml", "README.md", "src/openshell_plugin_acme_bot/__init__.py", "src/openshell_plugin_acme_bot/py.typed", "tests/test_acme_bot.py"):
        assert (dest / rel).is_file(), rel
    for f in dest.rglob("*"):
        if f.is_file():
            assert "{{" not in f.read_text(), f"unrendered placeholder in {f}"
    pyproject = (dest / "pyproject.toml").read_text()
    assert 'name = "openshell-plugin-acme_bot"' in pyproject
    assert '[project.entry-points."openshell.agents"]\nacme_bot = "openshell_plugin_acme_bot"' in pyproject


@pytest.mark.timeout(900)
def test_rendered_plugin_installs_with_core_and_passes_its_tests(tmp_path):
    dest = tmp_path / "openshell-plugin-acme_bot"
    assert _render(dest, *VALUES).returncode == 0
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    install = subprocess.run(
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", str(REPO / "openshell-core"), "-e", f"{dest}[test]"],
        capture_output=True,
        text=True,
        timeout=900,
        env=_clean_env(),
    )
    assert install.returncode == 0, f"pip install failed:\n{install.stdout}\n{install.stderr}"
    # The CLI is not installed here: a plugin depends on openshell-core only.
    check = subprocess.run([py, "-c", "import openshell_cli"], capture_output=True, text=True, env=_clean_env())
    assert check.returncode != 0
    tests = subprocess.run(
        [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(dest), str(dest / "tests")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=dest,
        env={**_clean_env(), "OPENSHELL_STRICT_PLUGINS": "1"},
    )
    assert tests.returncode == 0, f"rendered plugin's tests failed:\n{tests.stdout}\n{tests.stderr}"
    assert " passed" in tests.stdout and "failed" not in tests.stdout
    # The installed plugin is discoverable by the loader exactly like a first-party one.
    listing = subprocess.run(
        [
            py,
            "-c",
            "from openshell.plugin.loader import get_registry; r = get_registry();c = r.get_class('agents', 'acme_bot'); print(c.package, c().argv(['x']))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_clean_env(), "OPENSHELL_STRICT_PLUGINS": "1"},
    )
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.strip() == "npm:@acme/bot-cli ['acme-bot', 'x']"
