"""What a supervisor's start imports and defers (create-to-READY of a container
sandbox is mostly its interpreter importing: BENCHMARKS.md, docker driver).

The heavy parts a sandbox may never use — ``cryptography`` (the sandbox CA comes
from the gateway as PEM), the YAML parser (the policy comes as JSON too), the
HTTP inspector and the inference router (built on first use), the entry-point
scan (the driver resolved the plugins) — stay out of the start, and each still
works when it is needed.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys

import pytest
from openshell import pki
from openshell.inference.bundle import RouteBundle
from openshell.supervisor.deferred import DeferredInspector, DeferredRouter
from openshell.supervisor.main import _json_document
from openshell.supervisor.sandbox_ca import SandboxCA

DEFERRED = (
    "cryptography",
    "yaml",
    "stevedore",
    "importlib.metadata",
    "openshell.supervisor.proxy.l7.inspector",
    "openshell.supervisor.proxy.l7.transport",
    "openshell.supervisor.inference",
    "aiohttp",
)


def test_a_start_imports_none_of_the_deferred_modules():
    # a fresh interpreter, as in a container: the start's imports, the engine and the
    # isolation layers as the driver resolved them, the CA from PEM, the policy from JSON
    cert, key = pki.make_sandbox_ca("probe")
    code = f"""
import json, sys
from openshell.plugin.loader import list_entry_points
resolved = {{i.key: i.module for kind in ("policy", "isolation") for i in list_entry_points(kind)}}
for name in list(sys.modules):  # the lookup above is the driver's, in the gateway
    if name.startswith(("importlib.metadata", "email", "zipfile", "csv", "stevedore")):
        del sys.modules[name]
import openshell.supervisor.main as m
from openshell.plugin.loader import use_resolved_entry_points
use_resolved_entry_points(resolved)
engine = m._preload()
import openshell.supervisor.credentials, openshell.supervisor.provider_link, openshell.supervisor.users  # the start's own
from openshell.supervisor import launcher
from openshell.supervisor.layers import REQUIRED_LAYERS
layers = [launcher.supervisor_layer_class(n) for n in REQUIRED_LAYERS]
from openshell.policy import parse_policy
policy = parse_policy(m._json_document('{{"version": 1}}'))
from openshell.supervisor.sandbox_ca import SandboxCA
ca = SandboxCA({cert!r}, {key!r})
ca.cert_pem()
print(json.dumps([engine.name, [c.name for c in layers], sorted(n for n in {DEFERRED!r} if n in sys.modules)]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    engine, layers, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert engine == "opa" and sorted(layers) == ["landlock", "netns", "seccomp"]
    assert loaded == []


def test_a_sandbox_ca_from_pem_issues_leaves_that_chain_to_it():
    cert, key = pki.make_sandbox_ca("lazy")
    ca = SandboxCA(cert, key)
    assert ca.cert_pem() == cert and "key" not in repr(ca).replace("key hidden", "")
    ctx = ca.server_context("api.example.test")
    assert isinstance(ctx, ssl.SSLContext)
    leaf = ca.issue_leaf("api.example.test", pki.new_key().public_key())
    assert leaf.issuer == ca.cert.subject


@pytest.mark.parametrize(
    ("cert", "key"),
    [
        (b"not pem", None),
        (None, b"-----BEGIN EC PRIVATE KEY-----\n"),  # not PKCS#8
    ],
)
def test_a_sandbox_ca_refuses_what_is_not_one_pem_certificate_and_a_pkcs8_key(cert, key):
    good_cert, good_key = pki.make_sandbox_ca("bad")
    with pytest.raises(ValueError, match="sandbox CA"):
        SandboxCA(cert or good_cert, key or good_key)
    with pytest.raises(ValueError, match="one PEM certificate"):
        SandboxCA(good_cert + good_cert, good_key)


def test_the_policy_json_refuses_duplicate_keys_and_non_objects():
    assert _json_document('{"version": 1}') == {"version": 1}
    with pytest.raises(ValueError, match="duplicate"):
        _json_document('{"version": 1, "version": 2}')
    with pytest.raises(ValueError, match="not an object"):
        _json_document("[1]")


def test_the_deferred_router_keeps_the_bundle_until_its_first_request_builds_it():
    router = DeferredRouter("sb-1", SandboxCA(*pki.make_sandbox_ca("r")))
    bundle = RouteBundle(backend="openai", model="m", revision=3)
    router.set_bundle(bundle)
    assert router._router is None  # nothing built for a route alone
    real = router._get()
    assert real.bundle is bundle
    newer = RouteBundle(backend="openai", model="m2", revision=4)
    router.set_bundle(newer)
    assert real.bundle is newer
    asyncio.run(router.close())


def test_the_deferred_inspector_still_fails_closed_at_start_on_a_bad_extra_ca(tmp_path):
    from openshell.extra_ca import ExtraCAError

    ca = SandboxCA(*pki.make_sandbox_ca("i"))
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ExtraCAError, match=f"OPENSHELL_EXTRA_CA={missing}: No such file"):
        DeferredInspector(ca, extra_ca=missing)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ExtraCAError, match="no usable CA certificate.*point it at a PEM file"):
        DeferredInspector(ca, extra_ca=str(bad))
    DeferredInspector(ca)  # none: fine


def test_a_gateway_refuses_to_start_with_a_bad_extra_ca(tmp_path, monkeypatch, caplog):
    from openshell.gateway import __main__ as gateway_main
    from openshell.gateway.__main__ import main

    monkeypatch.setattr(gateway_main, "configure_logging", lambda *a, **k: None)  # no handlers left behind
    monkeypatch.setenv("OPENSHELL_EXTRA_CA", str(tmp_path))  # a directory
    with caplog.at_level("ERROR", logger="openshell.gateway"):
        assert main(["--name", "xca", "--port", "1", "--state-dir", str(tmp_path / "state")]) == 1
    assert f"gateway failed to start: OPENSHELL_EXTRA_CA={tmp_path}: Is a directory" in caplog.text
