"""The lmstudio backend passes the inference backend contract and talks to a real HTTP server."""

from __future__ import annotations

from openshell.plugin.testing import InferenceBackendContract
from openshell_plugin_lmstudio import LmStudioBackend


class TestLmStudioBackendContract(InferenceBackendContract):
    plugin_class = LmStudioBackend


def test_default_base_url_is_lmstudios():
    assert LmStudioBackend.default_base_url == "http://127.0.0.1:1234/v1"


def test_probe_and_list_models_against_a_models_endpoint(models_server):
    url, seen = models_server
    backend = LmStudioBackend()
    assert backend.list_models(url, "k-1") == ["m-1"]
    result = backend.probe(url, None)
    assert result.ok and "1 model" in result.detail
    assert seen[0] == ("/v1/models", "Bearer k-1") and seen[1] == ("/v1/models", None)


def test_probe_reports_an_unreachable_server():
    result = LmStudioBackend().probe("http://127.0.0.1:9/v1", None)
    assert not result.ok and "unreachable" in result.detail
