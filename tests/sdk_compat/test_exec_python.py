"""The SDK's ``exec_python`` (``python`` + cloudpickle inside the sandbox) against our
gateway, and the read-only venv that provides them (see docs/sdk-compat.md)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(900)


def test_sdk_exec_python_runs_a_function_in_the_sandbox(gateway, sdk):
    result = sdk(
        """
        import json
        from openshell import Sandbox

        def probe(a, b=0):
            import os, sys
            return json.dumps({"sum": a + b, "cwd": os.getcwd(), "sandbox": os.environ.get("OPENSHELL_SANDBOX"),
                               "uid": os.getuid(), "exe": sys.executable})

        out = {}
        with Sandbox(workspace="default", ready_timeout_seconds=180, timeout=60) as sb:
            res = sb.exec_python(probe, args=(40,), kwargs={"b": 2})
            out["python"] = [res.exit_code, res.stdout, res.stderr]
            out["name"] = sb.sandbox.name
            # The venv is read-only for the sandbox: neither its files nor new ones.
            res = sb.exec(["sh", "-c",
                "d=/usr/lib/openshell/python; "
                "touch $d/new 2>/dev/null && echo wrote-new; "
                "f=$(python -c 'import cloudpickle; print(cloudpickle.__file__)'); echo \\"$f\\"; "
                "echo x >> \\"$f\\" 2>/dev/null && echo wrote-module; "
                "rm -rf $d/bin 2>/dev/null; ls $d/bin; command -v python; command -v python3"])
            out["readonly"] = [res.exit_code, res.stdout.splitlines()]
            # A project venv in the workdir comes first on PATH.
            res = sb.exec(["sh", "-c",
                "mkdir -p /sandbox/.venv/bin && printf '#!/bin/sh\\\\necho project-python\\\\n' > /sandbox/.venv/bin/python"
                " && chmod +x /sandbox/.venv/bin/python && python; echo \\"$PATH\\""])
            out["venv_first"] = [res.exit_code, res.stdout.splitlines()]
        print(json.dumps(out))
        """,
        env=gateway.env,
    )
    code, stdout, stderr = result["python"]
    assert code == 0, stderr
    probe = __import__("json").loads(stdout)
    assert probe["sum"] == 42 and probe["cwd"] == "/sandbox" and probe["sandbox"] == result["name"]
    assert probe["uid"] != 0 and probe["exe"] == "/usr/lib/openshell/python/bin/python"
    code, lines = result["readonly"]
    assert "wrote-new" not in lines and "wrote-module" not in lines
    assert lines[0].startswith("/usr/lib/openshell/python/lib/python3.") and lines[0].endswith("/cloudpickle/__init__.py")
    assert lines[1:] == ["python", "/usr/lib/openshell/python/bin/python", "/usr/bin/python3"]
    code, lines = result["venv_first"]
    assert code == 0 and lines[0] == "project-python"
    assert lines[1].startswith("/sandbox/.venv/bin:/usr/lib/openshell/python/bin:")
