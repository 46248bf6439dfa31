"""The nim backend passes the inference backend contract and talks to a real HTTP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from openshell.plugin.testing import InferenceBackendContract
from openshell_plugin_nim import NimBackend


class TestNimBackendContract(InferenceBackendContract):
    plugin_class = NimBackend


@pytest.fixture
def models_server():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps({"object": "list", "data": [{"id": "m-1", "object": "model"}]}).encode()
            self.send_response(200 if self.path == "/v1/models" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


def test_default_base_url_is_nims():
    assert NimBackend.default_base_url == "https://integrate.api.nvidia.com/v1"


def test_probe_and_list_models_against_a_models_endpoint(models_server):
    url, seen = models_server
    backend = NimBackend()
    assert backend.list_models(url, "k-1") == ["m-1"]
    result = backend.probe(url, None)
    assert result.ok and "1 model" in result.detail
    assert seen[0] == ("/v1/models", "Bearer k-1") and seen[1] == ("/v1/models", None)


def test_probe_reports_an_unreachable_server():
    result = NimBackend().probe("http://127.0.0.1:9/v1", None)
    assert not result.ok and "unreachable" in result.detail
