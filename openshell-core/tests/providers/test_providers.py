"""Provider types, placeholders and auto-provider planning."""

from __future__ import annotations

import base64

import pytest
from openshell.plugin import hookimpl
from openshell.plugin.testing import registered
from openshell.providers import (
    PlaceholderError,
    PlaceholderResolver,
    ProviderType,
    UnknownProviderType,
    get_provider_type,
    placeholder,
    plan_auto_providers,
    provider_types,
)
from openshell.providers.placeholders import Credential, contains_placeholder, host_matches


def test_core_ships_the_six_types_with_their_variables():
    types = provider_types()
    assert {"generic", "anthropic", "openai", "nvidia", "github", "gitlab"} <= set(types)
    assert types["anthropic"].env_vars == ("ANTHROPIC_API_KEY",)
    assert types["github"].env_vars == ("GITHUB_TOKEN", "GH_TOKEN")
    assert "api.github.com" in types["github"].hosts


def test_agent_types_declare_what_each_agent_reads():
    types = provider_types()
    assert {"claude", "claude-code", "codex", "opencode", "copilot", "google-cloud", "gemini", "openrouter"} <= set(types)
    assert types["claude-code"].env_vars == types["claude"].env_vars
    assert "CLAUDE_CODE_OAUTH_TOKEN" in types["claude"].env_vars
    assert types["codex"].env_vars == ("OPENAI_API_KEY", "CODEX_API_KEY")
    assert "COPILOT_GITHUB_TOKEN" in types["copilot"].env_vars
    assert types["google-cloud"].hosts_for("GOOGLE_API_KEY", {}) == ("*.googleapis.com",)


def test_a_bundling_type_sends_each_key_only_to_its_own_service():
    opencode = provider_types()["opencode"]
    assert opencode.hosts_for("ANTHROPIC_API_KEY", {}) == ("api.anthropic.com",)
    assert opencode.hosts_for("OPENAI_API_KEY", {}) == ("api.openai.com",)
    assert opencode.hosts_for("OPENAI_API_KEY", {"hosts": "llm.corp.test"}) == ("api.openai.com", "llm.corp.test")
    resolver = PlaceholderResolver([Credential("ANTHROPIC_API_KEY", "sk-ant", opencode.hosts_for("ANTHROPIC_API_KEY", {}), "oc")])
    with pytest.raises(PlaceholderError, match="may only be sent to api.anthropic.com"):
        resolver.value("ANTHROPIC_API_KEY", "api.openai.com")


def test_a_plugin_adds_a_type_through_the_hook_and_cannot_shadow_core():
    class Example(ProviderType):
        name = "example"
        summary = "x"
        env_vars = ("EXAMPLE_TOKEN",)

    class FakeOpenAI(ProviderType):
        name = "openai"

    class Plugin:
        @hookimpl
        def register_provider_types(self, register):
            register(Example)
            register(FakeOpenAI)

    with registered(Plugin()):
        types = provider_types()
        assert types["example"] is Example
        assert types["openai"] is not FakeOpenAI
    assert "example" not in provider_types()


def test_unknown_type_names_the_installed_ones():
    with pytest.raises(UnknownProviderType, match="installed types: .*anthropic"):
        get_provider_type("nope")


@pytest.mark.parametrize(
    ("pattern", "host", "ok"),
    [
        ("api.github.com", "API.github.com", True),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "a.b.example.com", False),
        ("**.example.com", "a.b.example.com", True),
        ("**.example.com", "example.com", False),
        ("api.github.com", "evil.com", False),
    ],
)
def test_host_patterns(pattern, host, ok):
    assert host_matches(pattern, host) is ok


@pytest.fixture
def resolver():
    return PlaceholderResolver([Credential("GITHUB_TOKEN", "ghp_real", ("api.github.com",), "gh")])


def test_header_placeholder_is_replaced_only_for_declared_hosts(resolver):
    ph = placeholder("GITHUB_TOKEN")
    assert resolver.resolve_header("api.github.com", "Authorization", f"Bearer {ph}") == "Bearer ghp_real"
    with pytest.raises(PlaceholderError, match="may only be sent to api.github.com, not evil.test"):
        resolver.resolve_header("evil.test", "Authorization", f"Bearer {ph}")


def test_unknown_placeholder_is_denied_not_forwarded(resolver):
    with pytest.raises(PlaceholderError, match="OTHER_KEY has no provider"):
        resolver.resolve_header("api.github.com", "X-Key", placeholder("OTHER_KEY"))


def test_query_placeholder_is_replaced_percent_encoded(resolver):
    target = "/repos?access_token=openshell%3Aresolve%3Aenv%3AGITHUB_TOKEN&x=1"
    assert resolver.resolve_target("api.github.com", target) == "/repos?access_token=ghp_real&x=1"
    with pytest.raises(PlaceholderError, match="not in the path"):
        resolver.resolve_target("api.github.com", "/openshell:resolve:env:GITHUB_TOKEN")


def test_basic_auth_placeholder_is_replaced(resolver):
    token = base64.b64encode(f"x-access-token:{placeholder('GITHUB_TOKEN')}".encode()).decode()
    out = resolver.resolve_header("api.github.com", "Authorization", f"Basic {token}")
    assert base64.b64decode(out.split()[1]) == b"x-access-token:ghp_real"
    assert contains_placeholder(f"GET / HTTP/1.1\r\nAuthorization: Basic {token}\r\n".encode())


def test_plain_values_pass_unchanged(resolver):
    assert resolver.resolve_header("evil.test", "Accept", "*/*") == "*/*"
    assert not contains_placeholder(b"GET /?q=openshell HTTP/1.1\r\n")


def test_auto_plan_uses_existing_creates_from_env_and_warns_about_missing():
    types = provider_types()
    plan = plan_auto_providers(
        ["anthropic", "github", "gitlab"],
        existing={"work-gh": "github"},
        environ={"ANTHROPIC_API_KEY": "sk-1"},
        types=types,
    )
    assert plan.use == ("work-gh",)
    assert plan.create == {"anthropic": ("anthropic", {"ANTHROPIC_API_KEY": "sk-1"})}
    assert plan.missing == ("gitlab",)
    assert "openshell provider create --name gitlab --type gitlab" in plan.warnings()[0]


def test_auto_plan_skips_types_the_user_named():
    plan = plan_auto_providers(["anthropic"], existing={"mine": "anthropic"}, environ={}, types=provider_types(), explicit=["mine"])
    assert plan == type(plan)()
