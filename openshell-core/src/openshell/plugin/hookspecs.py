"""Every hook OpenShell calls (DESIGN.md §3).

Plugin authors implement these with ``from openshell.plugin import hookimpl``.
Registration hooks receive a ``register`` callback and must pass classes (not
instances) and never do I/O. Event hooks are named in the past tense and their
return values are ignored. Each hook is documented in ``docs/plugins.md`` under
a heading with its exact signature; ``tests/test_hookspecs_documented.py`` fails
when one is not.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("openshell")

# --------------------------------------------------------------------------- registration


@hookspec
def register_agents(register: Callable[[type], None]) -> None:
    """Register agent classes by calling ``register(cls)``.

    :param register: call with each subclass of ``openshell.plugin.Agent``.
    """


@hookspec
def register_inference_backends(register: Callable[[type], None]) -> None:
    """Register inference backend classes by calling ``register(cls)``.

    :param register: call with each subclass of ``openshell.plugin.InferenceBackend``.
    """


@hookspec
def register_isolation_layers(register: Callable[[type], None]) -> None:
    """Register isolation layer classes by calling ``register(cls)``.

    :param register: call with each subclass of ``openshell.plugin.IsolationLayer``.
    """


@hookspec
def register_policy_engines(register: Callable[[type], None]) -> None:
    """Register policy engine classes by calling ``register(cls)``.

    :param register: call with each subclass of ``openshell.plugin.PolicyEngine``.
    """


@hookspec
def register_compute_drivers(register: Callable[[type], None]) -> None:
    """Register compute driver classes by calling ``register(cls)``.

    :param register: call with each subclass of ``openshell.plugin.ComputeDriver``.
    """


@hookspec
def register_provider_types(register: Callable[[type], None]) -> None:
    """Register provider types (credential kinds) by calling ``register(cls)``.

    Any plugin may implement it (an agent plugin adds the type of its own API
    key); core registers ``generic``, ``anthropic``, ``openai``, ``nvidia``,
    ``github`` and ``gitlab`` the same way. A name already taken is ignored.

    :param register: call with each subclass of ``openshell.providers.ProviderType``.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands to the ``openshell`` CLI.

    :param cli: the root ``click.Group``; call ``cli.add_command(cmd)``.
    """


# --------------------------------------------------------------------------- events


@hookspec
def gateway_started(gateway: Any) -> None:
    """Called once the gateway listens and serves.

    :param gateway: the running ``openshell.gateway.server.Gateway``.
    """


@hookspec
def sandbox_created(sandbox: Any) -> None:
    """Called after a sandbox record was stored and its supervisor was asked to start.

    :param sandbox: the stored record (``openshell.gateway.store.SandboxRecord``).
    """


@hookspec
def sandbox_deleted(sandbox: Any) -> None:
    """Called after a sandbox and everything it owned were removed.

    :param sandbox: the record as it was before deletion.
    """


@hookspec
def policy_loaded(sandbox_id: str, version: int) -> None:
    """Called when a supervisor reports that a policy revision is in force.

    :param sandbox_id: the sandbox's id.
    :param version: the revision number now enforced.
    """
