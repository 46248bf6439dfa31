"""The one entry point the proxy calls per connection: engine, then destination safety.

``decide(engine, compiled, inp, resolved)`` implements the order of POLICY.md
§2: the engine (§2.1–2.4) decides whether a rule allows the connection; only
then does destination safety (§2.5) check every resolved address. The engine
is called directly (hot path), never through a hook fan-out.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from openshell.policy.decision import ConnectInput, Decision
from openshell.policy.destination import check_destination
from openshell.policy.hosts import normalise_host

if TYPE_CHECKING:  # pragma: no cover
    from openshell.plugin.kinds import CompiledPolicy, PolicyEngine

log = logging.getLogger("openshell.policy")

SSRF_ENGINE = "ssrf"
SSRF_ERROR = "ssrf_denied"


def decide(engine: PolicyEngine, compiled: CompiledPolicy, inp: ConnectInput, resolved: Sequence[str]) -> Decision:
    """Decide one connection completely.

    :param engine: the selected policy engine (e.g. ``OpaEngine()``).
    :param compiled: ``engine.load(policy)``.
    :param inp: the connection; its host is normalised here too (lower case,
        no trailing dot or brackets).
    :param resolved: addresses the proxy resolved the host to (sandbox hosts
        entries first, then DNS); may be empty for an IP-literal host.
    :returns: the engine's denial as is; or, when allowed, the decision for the
        first candidate (rule key, endpoint) whose destination check passes, with
        ``addresses`` set to the validated addresses to dial (never re-resolve);
        or a denial with ``error="ssrf_denied"``, ``engine="ssrf"`` and a reason
        naming the failed check. Never raises: an engine exception denies.
    """
    host = normalise_host(inp.host)
    if host != inp.host:
        inp = dataclasses.replace(inp, host=host)
    try:
        d = engine.decide_connect(compiled, inp)
    except Exception as exc:  # fail closed (POLICY.md: an engine error denies)
        log.exception("policy engine %s failed; denying %s:%s", getattr(engine, "name", "?"), inp.host, inp.port)
        return Decision.deny(f"policy engine error: {exc}", engine=getattr(engine, "name", ""))
    if not d.allowed:
        return d
    candidates = d.candidates or ((d.policy, d.endpoint),)
    first_failure = None
    for key, endpoint in candidates:
        if endpoint is None:
            continue
        result = check_destination(host, endpoint, resolved)
        if result.ok:
            return dataclasses.replace(d, policy=key, endpoint=endpoint, addresses=result.addresses)
        if first_failure is None:
            first_failure = (key, result)
    if first_failure is None:
        return Decision.deny("policy engine allowed without naming an endpoint", engine=getattr(engine, "name", ""))
    key, result = first_failure
    return Decision.deny(result.reason, error=SSRF_ERROR, engine=SSRF_ENGINE, policy=key)
