"""Every case of the acceptance file (tests/cases/policy-decisions.yaml).

Network cases run through ``openshell.plugin.decide`` with the resolved
addresses injected; HTTP cases then run one request through
``decide_request``. Invalid documents must be rejected naming the field.
The case data is read from the shared file, never copied here.
"""

from __future__ import annotations

import pathlib

import pytest
import yaml
from openshell.plugin import ConnectInput, PathError, PolicyError, RequestInput, decide, parse_policy, parse_query, split_target
from openshell_plugin_opa import OpaEngine

# The acceptance cases live in the repository (tests/cases/, a verbatim copy of
# the project's shared acceptance data; tests/test_acceptance_cases.py keeps it honest).
CASES_FILE = pathlib.Path(__file__).resolve().parents[4] / "tests" / "cases" / "policy-decisions.yaml"


def _load() -> dict:
    return yaml.safe_load(CASES_FILE.read_text())


DATA = _load()
ENGINE = OpaEngine()


@pytest.mark.parametrize("case", DATA["cases"], ids=[c["id"] for c in DATA["cases"]])
def test_network_case(case: dict) -> None:
    policy = parse_policy({"version": 1, "network_policies": case["policy"]})
    compiled = ENGINE.load(policy)
    req, expect = case["request"], case["expect"]
    inp = ConnectInput(host=req["host"], port=req["port"], binary=req["binary"], ancestors=tuple(req.get("ancestors", ())))
    decision = decide(ENGINE, compiled, inp, req.get("resolved", ()))

    if "http" in req:
        assert decision.allowed, f"the connection must be allowed before HTTP inspection: {decision.reason}"
        http = req["http"]
        target = http["path"] + (f"?{http['query']}" if http.get("query") else "")
        try:
            path, raw_query = split_target(target)
        except PathError as exc:
            assert expect["decision"] == "deny", f"path refused ({exc}) but the case expects {expect['decision']}"
            return
        decision = ENGINE.decide_request(
            compiled,
            RequestInput(
                connect=inp,
                policy_key=decision.policy,
                method=http["method"],
                path=path,
                query=parse_query(raw_query),
                endpoint=decision.endpoint,
            ),
        )

    assert decision.action == expect["decision"], decision.reason
    if "error" in expect:
        assert decision.error == expect["error"]
    if "reason_contains" in expect:
        assert expect["reason_contains"] in decision.reason
    if "policy" in expect:
        assert decision.policy == expect["policy"]
    if decision.action != "deny" and "http" not in req:
        assert decision.addresses, "an allowed connection names the addresses to dial"


@pytest.mark.parametrize("case", DATA["invalid"], ids=[c["id"] for c in DATA["invalid"]])
def test_invalid_document_rejected(case: dict) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(case["document"])
    err = info.value
    assert case["expect_error_contains"] in err.message
    if "field" in case:
        assert err.field == case["field"]
    assert str(err) == f"{err.field}: {err.message}"
