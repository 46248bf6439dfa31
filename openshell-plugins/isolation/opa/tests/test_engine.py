"""Unit tests of the opa engine beyond the shared acceptance cases."""

from __future__ import annotations

import os

import pytest
from openshell.plugin import CompiledPolicy, ConnectInput, PolicyEngine, PolicyError, RequestInput, decide, parse_policy
from openshell_plugin_opa import OpaCompiled, OpaEngine, register_policy_engines
from openshell_plugin_opa.compile import resolve_symlink


def _policy(rules: dict):
    return parse_policy({"version": 1, "network_policies": rules})


def _rule(host="api.example.test", port=443, binaries=("/usr/bin/curl",), **ep):
    return {"endpoints": [{"host": host, "port": port, **ep}], "binaries": [{"path": b} for b in binaries]}


CURL = ConnectInput(host="api.example.test", port=443, binary="/usr/bin/curl")


def test_registers_opa_engine_class():
    seen = []
    register_policy_engines(seen.append)
    assert seen == [OpaEngine]
    assert issubclass(OpaEngine, PolicyEngine) and OpaEngine.name == "opa"


def test_rego_modules_ship_in_the_package():
    import openshell_plugin_opa

    pkg_dir = os.path.dirname(openshell_plugin_opa.__file__)
    assert {"network.rego", "http.rego"} <= set(os.listdir(pkg_dir))


def test_smallest_matching_key_wins():
    engine = OpaEngine()
    compiled = engine.load(_policy({"zeta": _rule(), "alpha": _rule(), "mid": _rule()}))
    d = engine.decide_connect(compiled, CURL)
    assert d.policy == "alpha"
    assert [k for k, _ in d.candidates] == ["alpha", "mid", "zeta"]


def test_exact_endpoint_is_preferred_over_wildcard_within_a_rule():
    engine = OpaEngine()
    pol = {"r": {"endpoints": [{"host": "*.example.test", "port": 443}, {"host": "api.example.test", "port": 443}], "binaries": [{"path": "/usr/bin/curl"}]}}
    d = engine.decide_connect(engine.load(_policy(pol)), CURL)
    assert d.endpoint.host == "api.example.test"


def test_endpoint_and_binary_must_come_from_the_same_rule():
    engine = OpaEngine()
    compiled = engine.load(_policy({"a": _rule(binaries=("/usr/bin/wget",)), "b": _rule(host="other.example.test")}))
    d = engine.decide_connect(compiled, CURL)
    assert d.action == "deny"
    assert "a" in d.reason and "readlink -f /usr/bin/curl" in d.reason


def test_binary_denial_names_the_ancestors():
    engine = OpaEngine()
    compiled = engine.load(_policy({"a": _rule(binaries=("/usr/bin/wget",))}))
    d = engine.decide_connect(compiled, ConnectInput("api.example.test", 443, "/usr/bin/python3", ("/bin/bash", "/usr/bin/tmux")))
    assert "/bin/bash, /usr/bin/tmux" in d.reason and "/usr/bin/python3" in d.reason


def test_binary_globs():
    engine = OpaEngine()
    compiled = engine.load(_policy({"g": _rule(binaries=("/opt/*/bin/tool", "/usr/lib/**/node", "/usr/bin/pytho?3"))}))
    for binary, allowed in [("/opt/x/bin/tool", True), ("/opt/x/y/bin/tool", False), ("/usr/lib/a/b/node", True), ("/usr/bin/python3", True)]:
        assert engine.decide_connect(compiled, ConnectInput("api.example.test", 443, binary)).allowed is allowed, binary


def test_symlinked_binary_in_policy_also_accepts_its_target(tmp_path):
    target = tmp_path / "python3.11"
    target.write_text("")
    link = tmp_path / "python3"
    link.symlink_to(target)
    engine = OpaEngine()
    compiled = engine.load(_policy({"py": _rule(binaries=(str(link),))}))
    assert engine.decide_connect(compiled, ConnectInput("api.example.test", 443, str(target))).allowed


def test_symlinks_resolve_inside_the_given_root(tmp_path):
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/python3.11").write_text("")
    (tmp_path / "usr/bin/python3").symlink_to("python3.11")
    assert resolve_symlink("/usr/bin/python3", str(tmp_path)) == "/usr/bin/python3.11"
    # absolute link targets and ".." are resolved inside the root, never on the host
    (tmp_path / "usr/bin/abs").symlink_to("/usr/bin/python3")
    assert resolve_symlink("/usr/bin/abs", str(tmp_path)) == "/usr/bin/python3.11"
    (tmp_path / "usr/bin/up").symlink_to("../../../../bin/x")
    assert resolve_symlink("/usr/bin/up", str(tmp_path)) == "/bin/x"
    (tmp_path / "usr/bin/loop").symlink_to("loop")
    assert resolve_symlink("/usr/bin/loop", str(tmp_path)) is None
    assert resolve_symlink("/usr/bin/python3.11", str(tmp_path)) is None  # not a link


def test_ipv6_target_in_reason_is_bracketed():
    engine = OpaEngine()
    d = engine.decide_connect(engine.load(_policy({"a": _rule()})), ConnectInput("[2001:db8::1]", 443, "/usr/bin/curl"))
    assert "[2001:db8::1]:443" in d.reason


def test_malformed_requested_host_is_denied():
    engine = OpaEngine()
    compiled = engine.load(_policy({"a": _rule(host="**.example.test")}))
    assert engine.decide_connect(compiled, ConnectInput(".example.test", 443, "/usr/bin/curl")).action == "deny"


# ------------------------------------------------------------------ caching


def test_repeated_connect_decision_does_not_rerun_rego():
    engine = OpaEngine()
    compiled = engine.load(_policy({"a": _rule()}))
    first = engine.decide_connect(compiled, CURL)
    runs = compiled.evaluations
    assert runs == 1
    assert engine.decide_connect(compiled, CURL) == first
    assert compiled.evaluations == runs
    engine.decide_connect(compiled, ConnectInput("api.example.test", 443, "/usr/bin/curl", ("/bin/sh",)))
    assert compiled.evaluations == runs + 1  # ancestors are part of the key


def test_repeated_request_decision_does_not_rerun_rego():
    engine = OpaEngine()
    compiled = engine.load(_policy({"a": _rule(protocol="rest", access="read-only")}))
    conn = engine.decide_connect(compiled, CURL)
    req = RequestInput(CURL, "a", "GET", "/x", (("q", "1"),), conn.endpoint)
    engine.decide_request(compiled, req)
    runs = compiled.evaluations
    engine.decide_request(compiled, req)
    assert compiled.evaluations == runs


def test_cache_is_bounded():
    engine = OpaEngine(cache_size=4)
    compiled = engine.load(_policy({"a": _rule()}))
    for port in range(1000, 1020):
        engine.decide_connect(compiled, ConnectInput("api.example.test", port, "/usr/bin/curl"))
    assert len(compiled.connect_cache) == 4


def test_each_revision_has_its_own_cache():
    engine = OpaEngine()
    old = engine.load(_policy({"a": _rule()}), version=1)
    new = engine.load(_policy({"a": _rule(binaries=("/usr/bin/wget",))}), version=2)
    assert engine.decide_connect(old, CURL).allowed
    assert not engine.decide_connect(new, CURL).allowed


# ------------------------------------------------------------------ fail closed


def test_rego_error_denies_and_is_logged(caplog):
    engine = OpaEngine(cache_size=0)
    compiled = engine.load(_policy({"a": _rule()}))

    def broken(query, inp):
        raise RuntimeError("interpreter exploded")

    compiled.query = broken  # type: ignore[method-assign]
    d = engine.decide_connect(compiled, CURL)
    assert d.action == "deny" and "interpreter exploded" in d.reason
    assert "interpreter exploded" in caplog.text
    d2 = engine.decide_request(compiled, RequestInput(CURL, "a", "GET", "/"))
    assert d2.action == "deny"


def test_undefined_result_denies():
    engine = OpaEngine(cache_size=0)
    compiled = engine.load(_policy({"a": _rule()}))

    class Undefined:
        def __str__(self) -> str:
            return "undefined"

    compiled._interp.query_bundle_entrypoint = lambda bundle, entrypoint: Undefined()  # type: ignore[method-assign]
    d = engine.decide_connect(compiled, CURL)
    assert d.action == "deny" and "undefined" in d.reason


def test_foreign_compiled_policy_denies():
    engine = OpaEngine()
    d = engine.decide_connect(CompiledPolicy(_policy({"a": _rule()})), CURL)
    assert d.action == "deny"


def test_decide_applies_destination_safety_after_the_engine():
    engine = OpaEngine()
    compiled = engine.load(_policy({"a": _rule(host="*.example.test")}))
    d = decide(engine, compiled, CURL, ["10.0.0.1"])
    assert d.error == "ssrf_denied" and d.engine == "ssrf"


# ------------------------------------------------------------------ L7


def _l7(ep: dict, method: str, path: str, query=()):
    engine = OpaEngine()
    compiled = engine.load(_policy({"k": _rule(protocol="rest", **ep)}))
    conn = engine.decide_connect(compiled, CURL)
    assert conn.allowed
    return engine.decide_request(compiled, RequestInput(CURL, "k", method, path, tuple(query), conn.endpoint))


@pytest.mark.parametrize(
    ("access", "method", "allowed"),
    [
        ("read-only", "GET", True),
        ("read-only", "HEAD", True),
        ("read-only", "OPTIONS", True),
        ("read-only", "POST", False),
        ("read-write", "POST", True),
        ("read-write", "PUT", True),
        ("read-write", "PATCH", True),
        ("read-write", "DELETE", False),
        ("full", "DELETE", True),
        ("full", "PROPFIND", True),
    ],
)
def test_access_presets(access, method, allowed):
    assert _l7({"access": access}, method, "/any/path").allowed is allowed


def test_delete_allowed_by_explicit_rule():
    assert _l7({"access": "read-only", "rules": [{"allow": {"method": "delete", "path": "/tmp/*"}}]}, "DELETE", "/tmp/x").allowed


def test_method_star_and_case_insensitive():
    assert _l7({"rules": [{"allow": {"method": "*", "path": "/a"}}]}, "patch", "/a").allowed


def test_double_star_needs_the_prefix_segment():
    ep = {"rules": [{"allow": {"method": "GET", "path": "/repos/**"}}]}
    assert _l7(ep, "GET", "/repos/").allowed
    assert not _l7(ep, "GET", "/repos").allowed
    assert not _l7(ep, "GET", "/reposx/a").allowed


def test_deny_rule_beats_allow_and_carries_key_and_rule():
    d = _l7({"access": "full", "deny_rules": [{"method": "*", "path": "/admin/**"}]}, "GET", "/admin/users")
    assert d.action == "deny" and d.policy == "k" and d.rule == "GET /admin/users"
    assert "deny rule" in d.reason and d.error == "policy_denied"


def test_deny_rule_for_get_also_blocks_head():
    assert not _l7({"access": "full", "deny_rules": [{"method": "GET", "path": "/secret"}]}, "HEAD", "/secret").allowed


def test_deny_rule_query_fires_when_any_value_matches():
    ep = {"access": "full", "deny_rules": [{"method": "GET", "path": "/s", "query": {"debug": "tru*"}}]}
    assert not _l7(ep, "GET", "/s", [("debug", "no"), ("debug", "true")]).allowed
    assert _l7(ep, "GET", "/s", [("debug", "no")]).allowed
    assert _l7(ep, "GET", "/s").allowed  # key absent: the deny rule does not fire


def test_allow_rule_query_needs_every_value_to_match():
    ep = {"rules": [{"allow": {"method": "GET", "path": "/d", "query": {"tag": "v-*", "a": {"any": ["1", "2"]}}}}]}
    assert _l7(ep, "GET", "/d", [("tag", "v-1"), ("a", "2")]).allowed
    assert not _l7(ep, "GET", "/d", [("tag", "v-1")]).allowed  # key a missing
    assert not _l7(ep, "GET", "/d", [("tag", "v-1"), ("tag", "x"), ("a", "1")]).allowed


def test_query_glob_star_crosses_slashes_and_dots():
    ep = {"rules": [{"allow": {"method": "GET", "path": "/d", "query": {"u": "https://*"}}}]}
    assert _l7(ep, "GET", "/d", [("u", "https://a.b/c")]).allowed


def test_non_canonical_path_is_canonicalised_and_above_root_denied():
    ep = {"rules": [{"allow": {"method": "GET", "path": "/repos/**"}}]}
    assert not _l7(ep, "GET", "/repos/../admin").allowed
    d = _l7(ep, "GET", "/../etc")
    assert d.action == "deny" and "refused" in d.reason


def test_audit_endpoint_turns_denials_into_audit():
    d = _l7({"access": "read-only", "enforcement": "audit", "deny_rules": [{"path": "/x"}]}, "GET", "/x")
    assert d.action == "audit" and d.allowed and d.policy == "k"


def test_request_without_endpoint_is_matched_through_the_connection():
    engine = OpaEngine()
    compiled = engine.load(_policy({"k": _rule(protocol="rest", access="read-only")}))
    assert engine.decide_request(compiled, RequestInput(CURL, "k", "GET", "/")).allowed
    assert not engine.decide_request(compiled, RequestInput(CURL, "nope", "GET", "/")).allowed


def test_request_on_l4_endpoint_is_not_inspected():
    engine = OpaEngine()
    compiled = engine.load(_policy({"k": _rule()}))
    assert engine.decide_request(compiled, RequestInput(CURL, "k", "DELETE", "/x")).allowed


def test_loaded_policy_is_an_opa_compiled():
    assert isinstance(OpaEngine().load(_policy({})), OpaCompiled)


def test_an_untrusted_binary_is_denied_saying_why():
    engine = OpaEngine()
    d = engine.decide_connect(engine.load(_policy({"a": _rule()})), ConnectInput("api.example.test", 443, "untrusted:/sandbox/curl (maps /sandbox/curl)"))
    assert d.action == "deny"
    assert "untrusted:/sandbox/curl (maps /sandbox/curl)" in d.reason and "maps a file the sandbox can write" in d.reason
    assert "malformed" not in d.reason


# --------------------------------------------------------------------------- prepared interpreters (fork server)


@pytest.fixture
def fresh_prepared(monkeypatch):
    """Empty prepared-interpreter stores for one test (they are per process)."""
    from openshell_plugin_opa import engine as opa_engine

    monkeypatch.setattr(opa_engine, "_built", {})
    monkeypatch.setattr(opa_engine, "_spare", [])
    return opa_engine


def _decisions(engine, compiled):
    inputs = (
        CURL,
        ConnectInput(host="api.example.test", port=443, binary="/usr/bin/wget"),
        ConnectInput(host="other.example.test", port=443, binary="/usr/bin/curl"),
    )
    return [(d.action, d.policy, d.reason) for d in (engine.decide_connect(compiled, i) for i in inputs)]


def test_a_prepared_policy_is_taken_by_one_load_and_decides_like_a_fresh_one(fresh_prepared):
    engine = OpaEngine()
    policy = _policy({"api": _rule()})
    engine.prepare(policy)
    ready = next(iter(fresh_prepared._built.values()))[0]
    first = engine.load(policy, 3)
    assert first._interp is ready and not fresh_prepared._built  # taken, not copied
    second = engine.load(policy, 4)
    assert second._interp is not first._interp  # never two compiled policies on one interpreter
    fresh = OpaEngine().load(policy)
    assert _decisions(engine, first) == _decisions(engine, second) == _decisions(engine, fresh)
    assert _decisions(engine, first)[0][0] == "allow"


def test_another_policy_takes_the_spare_interpreter_not_the_prepared_data(fresh_prepared):
    engine = OpaEngine()
    engine.prepare(parse_policy({"version": 1}))  # no network rules: denies everything
    spare = fresh_prepared._spare[0]
    compiled = engine.load(_policy({"api": _rule()}))
    assert compiled._interp is spare and not fresh_prepared._spare
    assert len(fresh_prepared._built) == 1  # still waiting for the policy it was built for
    assert engine.decide_connect(compiled, CURL).allowed  # this policy's rules, not the prepared ones
    empty = engine.load(parse_policy({"version": 1}))
    assert not fresh_prepared._built and not engine.decide_connect(empty, CURL).allowed


def test_prepared_interpreters_work_in_a_forked_child(fresh_prepared):
    """The fork server prepares, its children load: a child decides with its own copy."""
    engine = OpaEngine()
    policy = _policy({"api": _rule()})
    engine.prepare(policy)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            compiled = engine.load(policy)
            other = engine.load(_policy({"api": _rule(host="other.example.test")}))
            out = f"{engine.decide_connect(compiled, CURL).action} {engine.decide_connect(other, CURL).action} {len(fresh_prepared._built)}"
            os.write(w, out.encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        assert f.read().decode() == "allow deny 0"
    assert len(fresh_prepared._built) == 1  # the parent's stays for its next child


def test_prepare_refuses_what_load_refuses(fresh_prepared, monkeypatch):
    from openshell_plugin_opa import engine as opa_engine

    monkeypatch.setattr(opa_engine, "rego_modules", lambda: (("network", "package broken\nthis is not rego"),))
    with pytest.raises(PolicyError, match="opa engine cannot load"):
        OpaEngine().prepare(_policy({"api": _rule()}))
    assert not fresh_prepared._built and not fresh_prepared._spare
