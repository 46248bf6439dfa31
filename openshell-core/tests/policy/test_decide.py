"""``openshell.policy.decide``: engine first, then destination safety (POLICY.md §2)."""

from __future__ import annotations

from openshell.plugin import CompiledPolicy, PolicyEngine
from openshell.policy import decide, parse_policy
from openshell.policy.decide import decide as decide_from_module
from openshell.policy.decision import ConnectInput, Decision
from openshell.policy.model import Endpoint

WILD = Endpoint(host="*.corp.test", ports=(443,))
EXACT = Endpoint(host="api.corp.test", ports=(443,))


class FixedEngine(PolicyEngine):
    """Returns a preset decision and records the inputs it saw."""

    name = "fixed"

    def __init__(self, decision: Decision | Exception) -> None:
        self.decision = decision
        self.seen: list[ConnectInput] = []

    def load(self, policy, version=0):
        return CompiledPolicy(policy, version)

    def decide_connect(self, compiled, inp):
        self.seen.append(inp)
        if isinstance(self.decision, Exception):
            raise self.decision
        return self.decision


COMPILED = CompiledPolicy(parse_policy({"version": 1}))
INP = ConnectInput(host="API.corp.test.", port=443, binary="/usr/bin/curl")


def test_both_spellings_of_decide_are_the_same_function():
    # what the proxy and the inspector import, and what the package exports
    assert decide_from_module is decide


def test_engine_denial_is_returned_unchanged():
    denial = Decision.deny("endpoint x:1 is not allowed by any policy", engine="fixed")
    assert decide(FixedEngine(denial), COMPILED, INP, ["10.0.0.1"]) is denial


def test_host_is_normalised_before_the_engine_sees_it():
    engine = FixedEngine(Decision.deny("no", engine="fixed"))
    decide(engine, COMPILED, INP, [])
    assert engine.seen[0].host == "api.corp.test"


def test_allowed_decision_carries_the_validated_addresses():
    d = decide(FixedEngine(Decision("allow", policy="r", engine="fixed", endpoint=EXACT)), COMPILED, INP, ["10.0.0.1", "10.0.0.1"])
    assert d.action == "allow" and d.addresses == ("10.0.0.1",) and d.policy == "r"


def test_ssrf_denial_names_error_engine_and_check():
    d = decide(FixedEngine(Decision("allow", policy="w", engine="fixed", endpoint=WILD)), COMPILED, INP, ["10.0.0.1"])
    assert d.action == "deny" and d.error == "ssrf_denied" and d.engine == "ssrf"
    assert "public-only" in d.reason and d.policy == "w"


def test_next_candidate_is_tried_when_the_first_fails_destination_safety():
    allow = Decision("allow", policy="a", engine="fixed", endpoint=WILD, candidates=(("a", WILD), ("b", EXACT)))
    d = decide(FixedEngine(allow), COMPILED, INP, ["10.0.0.1"])
    assert d.action == "allow" and d.policy == "b" and d.endpoint == EXACT


def test_engine_exception_denies():
    d = decide(FixedEngine(RuntimeError("boom")), COMPILED, INP, ["10.0.0.1"])
    assert d.action == "deny" and "boom" in d.reason


def test_allow_without_endpoint_denies():
    d = decide(FixedEngine(Decision("allow", policy="r", engine="fixed")), COMPILED, INP, ["10.0.0.1"])
    assert d.action == "deny"
