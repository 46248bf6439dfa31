"""The environment every process that enters a sandbox starts with (DESIGN.md §5).

Nothing is inherited from the supervisor: its environment may hold secrets.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping, Sequence

from openshell.supervisor.sandbox_ca import ca_environment

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: a project venv in the workdir wins over everything (absent directories are skipped by lookups)
WORKDIR_VENV_BIN = "/sandbox/.venv/bin"
PROXY_PORT = 3128
NO_PROXY = "127.0.0.1,localhost,::1"
_NO_ENV: Mapping[str, str] = MappingProxyType({})


def proxy_environment(proxy_ip: str, port: int = PROXY_PORT) -> dict[str, str]:
    """Proxy variables in upper and lower case pointing at the supervisor's proxy."""
    url = f"http://{proxy_ip}:{port}"
    env: dict[str, str] = {}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = url
        env[name.lower()] = url
    env["NO_PROXY"] = env["no_proxy"] = NO_PROXY
    return env


def sandbox_environment(
    *,
    sandbox_name: str,
    proxy_ip: str,
    user: str = "sandbox",
    spec_env: Mapping[str, str] = _NO_ENV,
    request_env: Mapping[str, str] = _NO_ENV,
    extra_path: Sequence[str] = (),
) -> dict[str, str]:
    """Compose the environment for one process entering the sandbox.

    Later sources win: base → proxy and CA variables → the sandbox spec's
    ``--env`` → the request's own variables (exec ``--env``, SSH env). Proxy
    variables are set again last so a request cannot point traffic elsewhere
    by accident (the network namespace would refuse it anyway).

    ``PATH`` is ``/sandbox/.venv/bin``, then ``extra_path`` (the read-only
    ``python`` of :mod:`openshell.supervisor.sandbox_python`), then the system
    directories.

    :returns: the complete environment (str → str).
    """
    env = {
        "PATH": ":".join((WORKDIR_VENV_BIN, *extra_path, DEFAULT_PATH)),
        "HOME": "/sandbox",
        "USER": user,
        "LOGNAME": user,
        "SHELL": "/bin/bash",
        "LANG": "C.UTF-8",
        # Programs fall back to /var/tmp, which Landlock's baseline does not grant.
        "TMPDIR": "/tmp",
        "OPENSHELL_SANDBOX": sandbox_name,
    }
    env.update(ca_environment())
    env.update(dict(spec_env))
    env.update(dict(request_env))
    env.update(proxy_environment(proxy_ip))
    return env
