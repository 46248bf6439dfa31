"""Provider types: what a kind of credential is called and where it may be sent.

A provider type is a class (never instantiated for listing) that declares:

- ``env_vars``: the environment variables its credentials live in, in order of
  preference. ``provider create --from-existing`` reads them from the user's
  environment; inside a sandbox each one holds a placeholder.
- ``hosts``: host patterns (POLICY.md §2.2 syntax) the real values may be sent
  to. The proxy substitutes a placeholder only in requests to these hosts, and
  only on connections it inspects.

Core ships ``generic`` (any variable, hosts from the provider's ``hosts``
config), API-key types (``anthropic``, ``openai``, ``nvidia``, ``gemini``,
``mistral``, ``groq``, ``openrouter``, ``huggingface``), code hosts (``github``,
``gitlab``), agent types bundling what one coding agent reads (``claude`` with
its alias ``claude-code``, ``codex``, ``opencode``, ``copilot``) and
``google-cloud``; plugins add more through ``register_provider_types(register)``.

A type whose variables go to different services declares ``env_hosts``
(variable → hosts), so e.g. an ``opencode`` provider's Anthropic key is only
ever substituted in requests to Anthropic, never to OpenAI.
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
    #: per-variable hosts for types bundling several services' keys (default: :attr:`hosts`)
    env_hosts: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    @classmethod
    def credential_hosts(cls, config: Mapping[str, str]) -> tuple[str, ...]:
        """Return the host patterns credentials of a provider with ``config`` may go to.

        The default is :attr:`hosts` plus any comma-separated ``hosts`` config
        entry (so a self-hosted GitLab can add its own name).
        """
        extra = tuple(h.strip().lower() for h in config.get("hosts", "").split(",") if h.strip())
        return tuple(dict.fromkeys((*cls.hosts, *extra)))

    @classmethod
    def hosts_for(cls, env_name: str, config: Mapping[str, str]) -> tuple[str, ...]:
        """Host patterns the value of variable ``env_name`` may go to.

        ``env_hosts[env_name]`` when the type declares it, else
        :meth:`credential_hosts`; the ``hosts`` config entry extends either.
        """
        if env_name not in cls.env_hosts:
            return cls.credential_hosts(config)
        extra = tuple(h.strip().lower() for h in config.get("hosts", "").split(",") if h.strip())
        return tuple(dict.fromkeys((*cls.env_hosts[env_name], *extra)))

    @classmethod
    def accepts_env_var(cls, env_name: str) -> bool:
        """True when ``env_name`` may hold a credential of this type."""
        return not cls.env_vars or env_name in cls.env_vars


_ANTHROPIC_HOSTS = ("api.anthropic.com",)
_OPENAI_HOSTS = ("api.openai.com",)
_GEMINI_HOSTS = ("generativelanguage.googleapis.com",)
_OPENROUTER_HOSTS = ("openrouter.ai",)
_GITHUB_HOSTS = ("github.com", "api.github.com", "uploads.github.com")
_COPILOT_HOSTS = ("api.githubcopilot.com", "**.githubcopilot.com", "api.github.com", "github.com")


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
    hosts = _GITHUB_HOSTS


class GitlabProvider(ProviderType):
    name = "gitlab"
    summary = "GitLab token (GITLAB_TOKEN) for gitlab.com (add self-hosted names with --config hosts=...)"
    env_vars = ("GITLAB_TOKEN",)
    hosts = ("gitlab.com",)


class GeminiProvider(ProviderType):
    name = "gemini"
    summary = "Gemini API key (GEMINI_API_KEY, GOOGLE_API_KEY) for generativelanguage.googleapis.com"
    env_vars = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    hosts = _GEMINI_HOSTS


class MistralProvider(ProviderType):
    name = "mistral"
    summary = "Mistral API key (MISTRAL_API_KEY) for api.mistral.ai"
    env_vars = ("MISTRAL_API_KEY",)
    hosts = ("api.mistral.ai",)


class GroqProvider(ProviderType):
    name = "groq"
    summary = "Groq API key (GROQ_API_KEY) for api.groq.com"
    env_vars = ("GROQ_API_KEY",)
    hosts = ("api.groq.com",)


class OpenRouterProvider(ProviderType):
    name = "openrouter"
    summary = "OpenRouter API key (OPENROUTER_API_KEY) for openrouter.ai"
    env_vars = ("OPENROUTER_API_KEY",)
    hosts = _OPENROUTER_HOSTS


class HuggingFaceProvider(ProviderType):
    name = "huggingface"
    summary = "Hugging Face token (HF_TOKEN, HUGGING_FACE_HUB_TOKEN) for huggingface.co"
    env_vars = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
    hosts = ("huggingface.co", "**.huggingface.co", "**.hf.co")


class ClaudeProvider(ProviderType):
    name = "claude"
    summary = "Claude Code: ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN or ANTHROPIC_AUTH_TOKEN for api.anthropic.com"
    env_vars = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN")
    hosts = _ANTHROPIC_HOSTS
    inference_backend = "anthropic"


class ClaudeCodeProvider(ClaudeProvider):
    name = "claude-code"
    summary = "Same as 'claude'"


class CodexProvider(ProviderType):
    name = "codex"
    summary = "OpenAI Codex CLI: OPENAI_API_KEY or CODEX_API_KEY for api.openai.com"
    env_vars = ("OPENAI_API_KEY", "CODEX_API_KEY")
    hosts = _OPENAI_HOSTS
    inference_backend = "openai"


class OpencodeProvider(ProviderType):
    name = "opencode"
    summary = "opencode: OPENCODE_API_KEY (opencode.ai) and the Anthropic, OpenAI, OpenRouter, Gemini keys it reads, each for its own service"
    env_vars = ("OPENCODE_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "GEMINI_API_KEY")
    env_hosts = {
        "OPENCODE_API_KEY": ("opencode.ai", "api.opencode.ai"),
        "ANTHROPIC_API_KEY": _ANTHROPIC_HOSTS,
        "OPENAI_API_KEY": _OPENAI_HOSTS,
        "OPENROUTER_API_KEY": _OPENROUTER_HOSTS,
        "GEMINI_API_KEY": _GEMINI_HOSTS,
    }


class CopilotProvider(ProviderType):
    name = "copilot"
    summary = "GitHub Copilot CLI: COPILOT_GITHUB_TOKEN, GH_TOKEN or GITHUB_TOKEN for the Copilot API and github.com"
    env_vars = ("COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN")
    hosts = _COPILOT_HOSTS


class GoogleCloudProvider(ProviderType):
    name = "google-cloud"
    summary = "Google Cloud: GOOGLE_API_KEY, GOOGLE_CLOUD_ACCESS_TOKEN or CLOUDSDK_AUTH_ACCESS_TOKEN for *.googleapis.com"
    env_vars = ("GOOGLE_API_KEY", "GOOGLE_CLOUD_ACCESS_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN")
    hosts = ("*.googleapis.com",)


#: core's types, registered by ``openshell.providers.builtin`` through the hook
CORE_TYPES: tuple[type[ProviderType], ...] = (
    GenericProvider,
    AnthropicProvider,
    OpenAIProvider,
    NvidiaProvider,
    GithubProvider,
    GitlabProvider,
    GeminiProvider,
    MistralProvider,
    GroqProvider,
    OpenRouterProvider,
    HuggingFaceProvider,
    ClaudeProvider,
    ClaudeCodeProvider,
    CodexProvider,
    OpencodeProvider,
    CopilotProvider,
    GoogleCloudProvider,
)
