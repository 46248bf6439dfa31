"""Figure 4: policy decisions per second, cold (Rego evaluated) and cached.

In-process, the real ``opa`` engine and the real ``openshell.policy.decide.decide``
(engine, then destination safety), on a policy of a typical size (a dozen
rules, exact and wildcard hosts, several binaries).

- ``engine cold``: an engine with its cache disabled, so every call runs Rego;
- ``engine cached``: the same input again and again (cache hit);
- ``decide cached``: the proxy's entry point on a cache hit, destination
  safety included (what a repeated connection costs).
"""

from __future__ import annotations

import time

from openshell_bench.context import Context
from openshell_bench.results import FigureResult, Skip, Target

POLICY = (
    """
version: 1
network_policies:
"""
    + "".join(
        f"""  rule{i}:
    endpoints:
      - {{host: api{i}.example.com, port: 443}}
      - {{host: "*.svc{i}.example.com", ports: [443, 8443]}}
    binaries: [{{path: /usr/bin/curl}}, {{path: /usr/bin/git}}, {{path: "/opt/tool{i}/**"}}]
"""
        for i in range(12)
    )
    + """  bench:
    endpoints: [{host: bench.example.test, port: 8080, allowed_ips: [10.199.50.0/24]}]
    binaries: [{path: /usr/bin/python3.11}]
"""
)


def _rate(fn, seconds: float) -> float:
    """Calls per second of ``fn(i)`` over about ``seconds`` (at least 50 calls)."""
    n, i = 0, 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(50):
            fn(i)
            i += 1
        n += 50
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - t0)


def decisions(ctx: Context) -> FigureResult:
    """Measure decisions/s (see module docstring)."""
    try:
        from openshell_plugin_opa import OpaEngine
    except ImportError as exc:
        raise Skip(f"the opa engine plugin is not installed ({exc})") from None
    from openshell.policy import parse_policy
    from openshell.policy.decide import decide
    from openshell.policy.decision import ConnectInput

    fig = FigureResult("policy decisions per second (opa engine, in process)")
    policy = parse_policy(POLICY)
    secs = ctx.sizes.decide_seconds
    ancestors = ("/usr/bin/bash",)

    cold_engine = OpaEngine(cache_size=0)
    cold = cold_engine.load(policy)
    inputs = [ConnectInput(f"api{i % 12}.example.com", 443, "/usr/bin/curl", ancestors) for i in range(12)]
    fig.add("opa engine", "cold (Rego each call)", _rate(lambda i: cold_engine.decide_connect(cold, inputs[i % 12]), secs), "decisions/s")
    denied = ConnectInput("nowhere.example.org", 443, "/usr/bin/curl", ancestors)
    fig.add("opa engine", "cold, denied", _rate(lambda i: cold_engine.decide_connect(cold, denied), secs), "decisions/s")

    engine = OpaEngine()
    compiled = engine.load(policy)
    hit = ConnectInput("api3.example.com", 443, "/usr/bin/curl", ancestors)
    engine.decide_connect(compiled, hit)
    cached = _rate(lambda i: engine.decide_connect(compiled, hit), secs)
    fig.add("opa engine", "cached", cached, "decisions/s")
    bench_in = ConnectInput("bench.example.test", 8080, "/usr/bin/python3.11", ancestors)
    resolved = ["10.199.50.2"]
    assert decide(engine, compiled, bench_in, resolved).allowed
    full = _rate(lambda i: decide(engine, compiled, bench_in, resolved), secs)
    fig.add("decide()", "cached + destination safety", full, "decisions/s")
    base = fig.rows[0].value
    for r in fig.rows[1:]:
        r.ratio, r.baseline = r.value / base, "cold (Rego each call)"
    fig.targets.append(Target("cached decisions", "≥ 50,000/s", f"{full:,.0f}/s (decide), {cached:,.0f}/s (engine)", full >= 50_000))
    return fig
