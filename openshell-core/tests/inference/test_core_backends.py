"""Core's ``openai`` and ``anthropic`` backends are plugins like any other and speak their auth."""

from __future__ import annotations

from openshell.inference.anthropic import AnthropicBackend
from openshell.inference.openai import OpenAIBackend
from openshell.plugin.loader import get_registry
from openshell.plugin.testing import InferenceBackendContract


class TestOpenAIContract(InferenceBackendContract):
    plugin_class = OpenAIBackend


class TestAnthropicContract(InferenceBackendContract):
    plugin_class = AnthropicBackend


def test_core_backends_are_registered_through_entry_points():
    classes = get_registry().classes("inference")
    assert classes["openai"] is OpenAIBackend and classes["anthropic"] is AnthropicBackend


def test_auth_headers_match_each_api():
    assert OpenAIBackend().auth_headers("k") == {"Authorization": "Bearer k"}
    assert OpenAIBackend().auth_headers(None) == {}
    assert AnthropicBackend().auth_headers("k") == {"x-api-key": "k", "anthropic-version": "2023-06-01"}
