"""Blocking HTTP helpers for backends' ``probe()`` and ``list_models()``.

Runs in the CLI or gateway (never in a sandbox). Proxy variables of the
caller's environment are ignored: a backend on the host's loopback must be
dialed directly.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping

from openshell.plugin.kinds import InferenceBackend, ProbeResult

PROBE_TIMEOUT = 5.0  # seconds
MAX_BODY = 4 << 20  # bytes read from a models endpoint

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get_json(url: str, headers: Mapping[str, str], timeout: float = PROBE_TIMEOUT) -> object:
    """GET ``url`` and decode its JSON body.

    :raises OSError: unreachable, HTTP error status (``urllib.error.HTTPError``), or
        a body that is not JSON (as ``OSError`` with the reason).
    """
    req = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    with _OPENER.open(req, timeout=timeout) as resp:
        body = resp.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise OSError(f"{url}: answer larger than {MAX_BODY} bytes")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise OSError(f"{url}: answer is not JSON ({exc})") from None


def models_url(base_url: str) -> str:
    """``{base_url}/models`` without a doubled slash."""
    return base_url.rstrip("/") + "/models"


def model_ids(document: object) -> list[str]:
    """Model ids from an OpenAI (``{"data": [{"id"}]}``) or Anthropic models list."""
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise OSError("models answer has no 'data' list")
    return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]


def probe_models(base_url: str, headers: Mapping[str, str]) -> ProbeResult:
    """``ProbeResult(True, "N models at URL")`` when the models endpoint answers, else the reason."""
    url = models_url(base_url)
    try:
        ids = model_ids(get_json(url, headers))
    except urllib.error.HTTPError as exc:
        return ProbeResult(False, f"{url} answered HTTP {exc.code}")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return ProbeResult(False, f"{url} unreachable: {reason}")
    return ProbeResult(True, f"{len(ids)} model(s) at {url}")


class ModelsEndpointBackend(InferenceBackend):
    """An ``InferenceBackend`` whose models list is ``GET {base_url}/models`` (OpenAI
    and Anthropic both answer ``{"data": [{"id": ...}]}``), sent with the
    backend's own ``auth_headers``."""

    def list_models(self, base_url: str, credential: str | None) -> list[str]:
        """Model ids from ``GET {base_url}/models``; raises ``OSError`` when unreachable."""
        return model_ids(get_json(models_url(base_url), self.auth_headers(credential)))

    def probe(self, base_url: str, credential: str | None) -> ProbeResult:
        """OK when ``GET {base_url}/models`` answers with a models list."""
        return probe_models(base_url, self.auth_headers(credential))
