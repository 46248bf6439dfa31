"""Every hook OpenShell calls (DESIGN.md §3), and the two pluggy markers.

Plugin authors implement these with ``from openshell.plugin import hookimpl``.
Registration hooks receive a ``register`` callback and must pass classes (not
instances) and never do I/O. Event hooks are named in the past tense, receive
frozen event objects (:mod:`openshell.plugin.events`) and their return values
are ignored. OpenShell calls every hook with keyword arguments, so an
implementation takes only the arguments it uses, by name. Each hook is
documented in ``docs/plugins.md`` (the hook reference) under a heading with its exact
signature; ``tests/plugin/test_hookspecs_documented.py`` fails when one is not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

from openshell.plugin.events import GatewayEvent, SandboxEvent

if TYPE_CHECKING:  # pragma: no cover
    import click

hookspec = pluggy.HookspecMarker("openshell")
#: decorate a plugin's hook implementations with it (re-exported as ``openshell.plugin.hookimpl``)
hookimpl = pluggy.HookimplMarker("openshell")

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
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``openshell`` CLI.

    :param cli: the root ``click.Group``; call ``cli.add_command(cmd)``.
    """


# --------------------------------------------------------------------------- events


@hookspec
def gateway_started(gateway: GatewayEvent) -> None:
    """Called once the gateway listens and serves.

    :param gateway: a frozen :class:`~openshell.plugin.events.GatewayEvent`
        (name, endpoint, port, driver, state_dir, started_at); no keys, no store.
    """


@hookspec
def sandbox_created(sandbox: SandboxEvent) -> None:
    """Called after a sandbox was stored and its compute driver was asked to start it.

    :param sandbox: a frozen :class:`~openshell.plugin.events.SandboxEvent` (id,
        name, workspace, labels, phase, reason, created_at); never the secret or
        the environment. ``phase`` is ``ERROR`` when the driver could not start it.
    """


@hookspec
def sandbox_deleted(sandbox: SandboxEvent) -> None:
    """Called after a sandbox and everything it owned were removed.

    :param sandbox: a frozen :class:`~openshell.plugin.events.SandboxEvent` of the
        sandbox as it was just before deletion.
    """


@hookspec
def policy_loaded(sandbox_id: str, version: int) -> None:
    """Called when a supervisor reports that a policy revision is in force.

    :param sandbox_id: the sandbox's id.
    :param version: the revision number now enforced.
    """
