"""Every routine task. Distributions are discovered by globbing pyproject.toml,
so a new plugin needs no edit here.

    nox -s tests        # each distribution's own tests, in a venv with only core + it
    nox -s e2e          # cross-distribution integration and end-to-end tests (root)
    nox -s lint         # ruff, and no import cycles among our modules
    nox -s typecheck    # mypy, one run per distribution
    nox -s protos       # regenerate gRPC code; CI fails when the committed output is stale
    nox -s demo         # the quick-start demo
    nox -s bench        # benchmarks (never part of tests)
    nox -s k8s          # build (cached) + start the single-node test cluster, tests/k8s, stop (root)
"""

from __future__ import annotations

import pathlib

import nox

ROOT = pathlib.Path(__file__).parent
CORE = ROOT / "openshell-core"
CLI = ROOT / "openshell-cli"
ISOLATION = sorted(p.parent for p in (ROOT / "openshell-plugins" / "isolation").glob("*/pyproject.toml"))
PLUGINS = sorted(p.parent for p in (ROOT / "openshell-plugins").glob("*/*/pyproject.toml"))
DISTS = [CORE, CLI, *PLUGINS]

nox.options.sessions = ["lint", "typecheck", "tests", "e2e"]
nox.options.reuse_existing_virtualenvs = True

VENV_PY = str(ROOT / ".venv" / "bin" / "python")


def _setup(session: nox.Session) -> None:
    session.run("bash", str(ROOT / "scripts" / "setup.sh"), external=True)


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Every distribution's tests (one venv, .venv, with everything installed)."""
    _setup(session)
    session.env["OPENSHELL_STRICT_PLUGINS"] = "1"
    test_dirs = [str(d / "tests") for d in DISTS if (d / "tests").is_dir()]
    session.run(VENV_PY, "-m", "pytest", *test_dirs, *session.posargs, external=True)


@nox.session(python=False)
def e2e(session: nox.Session) -> None:
    """Cross-distribution end-to-end tests on real kernel features (needs root)."""
    _setup(session)
    session.env["OPENSHELL_STRICT_PLUGINS"] = "1"
    session.run(VENV_PY, "-m", "pytest", str(ROOT / "tests"), *session.posargs, external=True)


@nox.session(python=False)
def k8s(session: nox.Session) -> None:
    """Kubernetes: build the pinned cluster binaries (cached in /var/cache/openshell/k8s),
    start the single-node cluster (scripts/k8s/start.sh), run tests/k8s and the
    kubernetes driver's tests, stop it. OPENSHELL_K8S_KEEP=1 leaves it running."""
    import os

    _setup(session)
    session.env["OPENSHELL_STRICT_PLUGINS"] = "1"
    session.run("bash", str(ROOT / "scripts" / "k8s" / "build.sh"), external=True)
    session.run("bash", str(ROOT / "scripts" / "k8s" / "start.sh"), external=True)
    try:
        tests = [str(ROOT / "tests" / "k8s"), str(ROOT / "openshell-plugins" / "drivers" / "kubernetes" / "tests")]
        session.run(VENV_PY, "-m", "pytest", *tests, *session.posargs, external=True)
    finally:
        if os.environ.get("OPENSHELL_K8S_KEEP") != "1":
            session.run("bash", str(ROOT / "scripts" / "k8s" / "stop.sh"), external=True)


@nox.session(python=False)
def template(session: nox.Session) -> None:
    """Render templates/openshell-agent-plugin, install it with core in a fresh venv, run its tests."""
    _setup(session)
    session.run(VENV_PY, "-m", "pytest", str(ROOT / "tests" / "test_plugin_template.py"), *session.posargs, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over every distribution, then scripts/import_cycles.py (fails on an import cycle)."""
    session.install("ruff")
    session.run("ruff", "check", *[str(d / "src") for d in DISTS])
    session.run("python", str(ROOT / "scripts" / "import_cycles.py"), str(ROOT))


@nox.session(python=False)
def typecheck(session: nox.Session) -> None:
    """mypy over each distribution's sources (with everything installed in .venv); scripts/test.sh runs the same script."""
    _setup(session)
    session.run(VENV_PY, str(ROOT / "scripts" / "typecheck.py"), external=True)


@nox.session
def protos(session: nox.Session) -> None:
    """Regenerate openshell/_proto from openshell-core/proto with grpcio-tools."""
    session.install("grpcio-tools==1.85.1")
    session.run("python", str(ROOT / "openshell-core" / "proto" / "generate.py"))


@nox.session(python=False)
def demo(session: nox.Session) -> None:
    """The quick-start demo: a test-host upstream, a sandbox, allowed and denied traffic."""
    _setup(session)
    session.run(VENV_PY, str(ROOT / "examples" / "quickstart" / "demo.py"), external=True)


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """Benchmarks; prints a table and writes bench/results/latest.json."""
    _setup(session)
    session.run(VENV_PY, str(ROOT / "bench" / "run.py"), *session.posargs, external=True)
