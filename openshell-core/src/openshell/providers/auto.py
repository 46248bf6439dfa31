"""Finding credentials in the user's environment (``--from-existing``, auto providers).

``sandbox create -- <agent>`` calls :func:`plan_auto_providers` with the agent
class's ``provider_types``, the providers the gateway already has and the
user's environment; the CLI then creates what the plan says and warns about
what is missing. Agent plugins' engineers: call it the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from openshell.providers.types import ProviderType


def discover_credentials(ptype: type[ProviderType], environ: Mapping[str, str]) -> dict[str, str]:
    """Return ``{env_name: value}`` of the type's variables that are set (non-empty) in ``environ``.

    ``generic`` declares no variables and so discovers nothing.
    """
    return {name: environ[name] for name in ptype.env_vars if environ.get(name)}


@dataclass(frozen=True)
class AutoProviderPlan:
    """What to do about the providers an agent needs.

    :ivar use: names of existing providers to attach (one per needed type).
    :ivar create: ``{provider name: (type, {env_name: value})}`` to create from the environment.
    :ivar missing: needed types for which neither a provider nor a variable exists.
    """

    use: tuple[str, ...] = ()
    create: Mapping[str, tuple[str, Mapping[str, str]]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()

    def warnings(self) -> list[str]:
        """One line per missing type, naming the variables and the command that fixes it."""
        return [
            f"no '{t}' provider and no credential in the environment; the agent may fail to authenticate "
            f"(create one with 'openshell provider create --name {t} --type {t} --credential KEY=VALUE')"
            for t in self.missing
        ]


def plan_auto_providers(
    needed_types: Sequence[str],
    existing: Mapping[str, str],
    environ: Mapping[str, str],
    *,
    types: Mapping[str, type[ProviderType]],
    explicit: Sequence[str] = (),
) -> AutoProviderPlan:
    """Decide which providers an agent's sandbox gets.

    :param needed_types: the agent's ``provider_types`` (e.g. ``("anthropic",)``).
    :param existing: ``{provider name: type}`` of the gateway's providers.
    :param environ: the user's environment (``os.environ``).
    :param types: installed provider types (``provider_types()``).
    :param explicit: providers the user named with ``--provider``; a needed type
        they cover is neither created nor warned about.
    :returns: the plan. A type is covered by an explicit provider, else by an
        existing provider of that type (the one named like the type first), else
        by a new provider named after the type made from the environment; an
        unknown type (plugin not installed) is reported missing.
    """
    covered = {existing.get(n) for n in explicit}
    use: list[str] = []
    create: dict[str, tuple[str, Mapping[str, str]]] = {}
    missing: list[str] = []
    for t in dict.fromkeys(needed_types):
        if t in covered:
            continue
        same = sorted(n for n, typ in existing.items() if typ == t)
        if same:
            use.append(t if t in same else same[0])
            continue
        ptype = types.get(t)
        found = discover_credentials(ptype, environ) if ptype is not None else {}
        if found:
            name = t if t not in existing else f"{t}-auto"
            create[name] = (t, found)
        else:
            missing.append(t)
    return AutoProviderPlan(tuple(use), create, tuple(missing))
