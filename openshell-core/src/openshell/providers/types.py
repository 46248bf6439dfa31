"""Provider types: what a kind of credential is called and where it may be sent.

A provider type is a class (never instantiated for listing) that declares:

- ``env_vars``: the environment variables its credentials live in, in order of
  preference. ``provider create --from-existing`` reads them from the user's
  environment; inside a sandbox each one holds a placeholder.
- ``hosts``: host patterns (POLICY.md §2.2 syntax) the real values may be sent
  to. The proxy substitutes a placeholder only in requests to these hosts, and
  only on connections it inspects.

Core ships ``generic`` (any variable, hosts from the provider's ``hosts``
config), ``anthropic``, ``openai``, ``nvidia``, ``github`` and ``gitlab``;
plugins add more through ``register_provider_types(register)``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import ClassVar


class ProviderType(abc.ABC):
    """Base class of every provider type (subclass it; register the class).

    :cvar name: public name (``--type NAME``), lower case.
    :cvar summary: one line for listings.
    :cvar env_vars: credential variable names, most preferred first. Empty means
        "any name the user gives" (``generic``).
    :cvar hosts: host patterns the credential values may be sent to.
    :cvar inference_backend: the inference backend this type's credential
        authenticates at by default (``inference set --provider``), or "".
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    env_vars: ClassVar[tuple[str, ...]] = ()
    hosts: ClassVar[tuple[str, ...]] = ()
    inference_backend: ClassVar[str] = ""

    @classmethod
    def credential_hosts(cls, config: Mapping[str, str]) -> tuple[str, ...]:
        """Return the host patterns credentials of a provider with ``config`` may go to.

        The default is :attr:`hosts` plus any comma-separated ``hosts`` config
        entry (so a self-hosted GitLab can add its own name).
        """
        extra = tuple(h.strip().lower() for h in config.get("hosts", "").split(",") if h.strip())
        return tuple(dict.fromkeys((*cls.hosts, *extra)))

    @classmethod
    def accepts_env_var(cls, env_name: str) -> bool:
        """True when ``env_name`` may hold a credential of this type."""
        return not cls.env_vars or env_name in cls.env_vars


class GenericProvider(ProviderType):
    name = "generic"
    summary = "Any credential variables; hosts from --config hosts=a.example,b.example"


class AnthropicProvider(ProviderType):
    name = "anthropic"
    summary = "Anthropic API key (ANTHROPIC_API_KEY) for api.anthropic.com"
    env_vars = ("ANTHROPIC_API_KEY",)
    hosts = ("api.anthropic.com",)
    inference_backend = "anthropic"


class OpenAIProvider(ProviderType):
    name = "openai"
    summary = "OpenAI API key (OPENAI_API_KEY) for api.openai.com"
    env_vars = ("OPENAI_API_KEY",)
    hosts = ("api.openai.com",)
    inference_backend = "openai"


class NvidiaProvider(ProviderType):
    name = "nvidia"
    summary = "NVIDIA API key (NVIDIA_API_KEY) for NIM endpoints on integrate.api.nvidia.com"
    env_vars = ("NVIDIA_API_KEY",)
    hosts = ("integrate.api.nvidia.com", "api.nvcf.nvidia.com")
    inference_backend = "nim"


class GithubProvider(ProviderType):
    name = "github"
    summary = "GitHub token (GITHUB_TOKEN, GH_TOKEN) for github.com and api.github.com"
    env_vars = ("GITHUB_TOKEN", "GH_TOKEN")
    hosts = ("github.com", "api.github.com", "uploads.github.com")


class GitlabProvider(ProviderType):
    name = "gitlab"
    summary = "GitLab token (GITLAB_TOKEN) for gitlab.com (add self-hosted names with --config hosts=...)"
    env_vars = ("GITLAB_TOKEN",)
    hosts = ("gitlab.com",)


#: core's types, registered by ``openshell.providers.builtin`` through the hook
CORE_TYPES: tuple[type[ProviderType], ...] = (
    GenericProvider,
    AnthropicProvider,
    OpenAIProvider,
    NvidiaProvider,
    GithubProvider,
    GitlabProvider,
)
