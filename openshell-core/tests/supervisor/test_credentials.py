"""The proxy's credential hook: placeholders become values only over TLS to declared hosts."""

from __future__ import annotations

import types

import pytest
from openshell.providers.placeholders import Credential
from openshell.supervisor.credentials import CredentialHook
from openshell.supervisor.proxy.l7.hooks import HookRefused, L7Request

HOOK = CredentialHook([Credential("API_KEY", "real-value", ("api.example.test",), "work")])


def request(host: str, *, tls: bool = True, target: str = "/v1/x", headers=None) -> L7Request:
    return L7Request("GET", target, "HTTP/1.1", list(headers or []), host, 443, tls, types.SimpleNamespace(sandbox_id="sb"))


def test_header_and_query_are_substituted_for_the_declared_host():
    req = request(
        "api.example.test",
        target="/v1/x?key=openshell:resolve:env:API_KEY",
        headers=[("Authorization", "Bearer openshell:resolve:env:API_KEY"), ("Accept", "*/*")],
    )
    HOOK.rewrite(req)
    assert req.headers == [("Authorization", "Bearer real-value"), ("Accept", "*/*")]
    assert req.target == "/v1/x?key=real-value"


def test_requests_without_placeholders_are_untouched():
    req = request("elsewhere.test", tls=False, headers=[("Authorization", "Bearer mine")])
    HOOK.rewrite(req)
    assert req.headers == [("Authorization", "Bearer mine")]


@pytest.mark.parametrize(
    ("host", "tls", "reason"),
    [
        ("evil.test", True, "may only be sent to api.example.test, not evil.test"),
        ("api.example.test", False, "only sent over TLS"),
    ],
)
def test_placeholder_that_cannot_be_resolved_is_refused_with_403(host, tls, reason):
    req = request(host, tls=tls, headers=[("X-Key", "openshell:resolve:env:API_KEY")])
    with pytest.raises(HookRefused) as err:
        HOOK.rewrite(req)
    assert err.value.status == 403 and err.value.error == "credential_placeholder_denied" and reason in err.value.detail
    assert "real-value" not in err.value.detail
