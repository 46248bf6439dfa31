"""The ``opa`` policy engine: POLICY.md §2.1–2.4 and §3 in Rego, evaluated with regopy.

One regopy ``Interpreter`` per compiled policy revision holds the modules and
the data (added once); a decision is ``set_input`` + one query, and decisions
are cached per revision. Every failure denies (fail closed) with a logged reason.

A parent that forks supervisors (the fork server) calls :meth:`OpaEngine.prepare`
first: the interpreters it builds then live in pages every child shares, and a
child's first compilation takes one instead of building its own (~4-6 MiB of
native memory per supervisor otherwise).
"""

from __future__ import annotations

import json
import logging
import threading
from functools import cache
from importlib import resources
from typing import Any

import regopy
from openshell.plugin import (
    HOST_ANY,
    HOST_EXACT,
    CompiledPolicy,
    ConnectInput,
    Decision,
    Endpoint,
    NetworkRule,
    PathError,
    Policy,
    PolicyEngine,
    PolicyError,
    RequestInput,
    canonical_path,
    host_kind,
    normalise_host,
    request_host_error,
)

from openshell_plugin_opa.compile import endpoint_id, policy_data
from openshell_plugin_opa.lru import LRUCache

log = logging.getLogger("openshell.policy.opa")

ENGINE_NAME = "opa"
# Bundle entry points (rule paths); querying a built bundle skips re-compiling
# the modules on every query (about 150 µs instead of several ms).
NETWORK_QUERY = "openshell_network/decision"
HTTP_QUERY = "openshell_http/decision"
ENTRYPOINTS = (NETWORK_QUERY, HTTP_QUERY)
DEFAULT_CACHE_SIZE = 4096

_SPECIFICITY = {HOST_EXACT: 0, HOST_ANY: 2}  # wildcard = 1


@cache
def rego_modules() -> tuple[tuple[str, str], ...]:
    """Return ``(name, source)`` of the Rego modules shipped in this package."""
    pkg = resources.files("openshell_plugin_opa")
    return tuple((name, pkg.joinpath(f"{name}.rego").read_text(encoding="utf-8")) for name in ("network", "http"))


def _data_key(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _with_modules() -> Any:
    """A new interpreter holding the shipped modules (no data yet)."""
    interp = regopy.Interpreter()
    for name, source in rego_modules():
        interp.add_module(name, source)
    return interp


# Interpreters built ahead of a fork (OpaEngine.prepare). Each is taken (popped) by
# at most one OpaCompiled of this process: an interpreter keeps its data and input
# as state, so it is never shared between two compiled policies.
_built: dict[str, tuple[Any, Any]] = {}  # data document (canonical JSON) -> (interpreter, bundle)
_spare: list[Any] = []  # interpreters with the modules only


def _interpreter(data: dict[str, Any]) -> tuple[Any, Any]:
    """``(interpreter, bundle)`` for ``data``: one built ahead for exactly this data, else a new build.

    :raises regopy.RegoError: the modules or the data cannot be loaded.
    """
    if _built:
        ready = _built.pop(_data_key(data), None)
        if ready is not None:
            return ready
    try:
        interp = _spare.pop()
    except IndexError:
        interp = _with_modules()
    return _build(interp, data)


def _build(interp: Any, data: dict[str, Any]) -> tuple[Any, Any]:
    """Add ``data`` to ``interp`` (which holds the modules) and build the bundle. :raises regopy.RegoError:."""
    interp.add_data(data)
    return interp, interp.build(None, list(ENTRYPOINTS))


def _load_error(exc: Exception) -> PolicyError:
    return PolicyError("document", f"the opa engine cannot load this policy: {str(exc).splitlines()[0]}")


class EngineError(RuntimeError):
    """The Rego evaluation failed or returned no decision (the caller denies)."""


class OpaCompiled(CompiledPolicy):
    """One policy revision prepared for the ``opa`` engine.

    :ivar evaluations: how many Rego queries ran (cache misses); for tests and metrics.
    """

    def __init__(self, policy: Policy, version: int, data: dict[str, Any], cache_size: int) -> None:
        super().__init__(policy, version)
        self.rules: dict[str, NetworkRule] = {r.key: r for r in policy.network}
        self.evaluations = 0
        self.connect_cache: LRUCache[Decision] = LRUCache(cache_size)
        self.request_cache: LRUCache[Decision] = LRUCache(cache_size)
        # regopy's interpreter keeps input as state: one query at a time.
        self._lock = threading.Lock()
        try:
            self._interp, self._bundle = _interpreter(data)
        except regopy.RegoError as exc:
            raise _load_error(exc) from None

    def query(self, query: str, inp: dict[str, Any]) -> dict[str, Any]:
        """Evaluate the entry point ``query`` with ``inp``; returns the decision object.

        :raises EngineError: when the result is undefined or not an object.
        """
        with self._lock:
            self.evaluations += 1
            self._interp.set_input(inp)
            out = self._interp.query_bundle_entrypoint(self._bundle, query)
            # Calling .expressions() on an undefined result aborts the process
            # (regopy 1.5.2), so read the JSON text instead.
            text = str(out).strip()
        if text == "undefined" or not text:
            raise EngineError(f"{query} is undefined")
        try:
            value = json.loads(text)["expressions"][0]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise EngineError(f"unreadable result of {query}: {exc}") from None
        if not isinstance(value, dict):
            raise EngineError(f"{query} returned {type(value).__name__}, expected an object")
        return value


def _connect_input_error(inp: ConnectInput) -> str:
    """Why ``inp`` is not a well-formed ConnectInput (empty when it is).

    Checked before Rego sees it: Rego compares loosely typed JSON, so a port
    ``"443"`` or a ``None`` binary must be refused here, not matched there.
    """
    if not isinstance(inp.host, str) or not inp.host:
        return "malformed connection: no host"
    if type(inp.port) is not int or not 1 <= inp.port <= 65535:
        return f"malformed connection: port {inp.port!r} is not 1-65535"
    if isinstance(inp.binary, str) and inp.binary.startswith("untrusted:"):
        # The attributor's marker (DESIGN: a process mapping a sandbox-writable file).
        return f"binary {inp.binary}: the process maps a file the sandbox can write, so no binary rule matches it"
    if not isinstance(inp.binary, str) or not inp.binary.startswith("/"):
        return f"malformed connection: binary {inp.binary!r} is not an absolute path"
    if not isinstance(inp.ancestors, tuple) or not all(isinstance(a, str) for a in inp.ancestors):
        return "malformed connection: ancestors are not paths"
    return ""


def _request_input_error(inp: RequestInput) -> str:
    """Why ``inp`` is not a well-formed RequestInput (empty when it is)."""
    if not isinstance(inp.method, str) or not inp.method.isalpha():
        return f"malformed request: method {inp.method!r}"
    if not isinstance(inp.path, str) or not isinstance(inp.policy_key, str):
        return "malformed request: path or policy key is not text"
    if not isinstance(inp.query, tuple) or not all(isinstance(p, tuple) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in inp.query):
        return "malformed request: query is not (key, value) pairs"
    return ""


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class OpaEngine(PolicyEngine):
    """Network and HTTP decisions written in Rego (POLICY.md §2.1–2.4, §3).

    :param cache_size: decisions kept per policy revision (connect and request
        caches each); 0 disables caching.
    :param root: the sandbox's filesystem view, where symlinked binary paths of
        the policy are resolved (``/`` for the local driver).
    """

    name = ENGINE_NAME
    summary = "Network decisions in Rego (regopy), with HTTP request inspection"

    def __init__(self, *, cache_size: int = DEFAULT_CACHE_SIZE, root: str = "/") -> None:
        self.cache_size = cache_size
        self.root = root

    # ------------------------------------------------------------------ load

    def load(self, policy: Policy, version: int = 0) -> OpaCompiled:
        """Compile ``policy`` (a validated :class:`Policy`) into an :class:`OpaCompiled`.

        :raises PolicyError: when the Rego modules or data cannot be loaded.
        """
        return OpaCompiled(policy, version, policy_data(policy, self.root), self.cache_size)

    def prepare(self, policy: Policy) -> None:
        """Build, in this process, what the first :meth:`load` of ``policy`` (and one other) will take.

        Meant for a parent before it forks: one interpreter with the modules and
        ``policy``'s data, used by a ``load`` whose data document is identical
        (the same network rules and resolved binaries; the rest of a policy is
        not the engine's), and one with the modules only, used by the first
        ``load`` of any other policy. Each is used once per process.

        :raises PolicyError: when the Rego modules or the data cannot be loaded.
        """
        data = policy_data(policy, self.root)
        try:
            _built[_data_key(data)] = _build(_with_modules(), data)
            _spare.append(_with_modules())
        except regopy.RegoError as exc:
            raise _load_error(exc) from None

    # ------------------------------------------------------------------ L4

    def decide_connect(self, compiled: CompiledPolicy, inp: ConnectInput) -> Decision:
        """Decide one connection (POLICY.md §2.1–2.4); never raises (errors deny).

        Allowed: ``policy`` = smallest matching key, ``endpoint`` its matching
        endpoint, ``candidates`` every matching (key, endpoint), preferred first.
        Denied: ``error="policy_denied"`` and one of the three §2.1 reasons.
        """
        try:
            if not isinstance(compiled, OpaCompiled):
                raise EngineError("policy was not compiled by the opa engine")
            malformed = _connect_input_error(inp)
            if malformed:
                return Decision.deny(f"{malformed}; connection refused", engine=ENGINE_NAME)
            host = normalise_host(inp.host)
            key = (host, inp.port, inp.binary, tuple(inp.ancestors))
            cached = compiled.connect_cache.get(key)
            if cached is not None:
                return cached
            decision = self._connect(compiled, host, inp)
            compiled.connect_cache.put(key, decision)
            return decision
        except Exception as exc:  # noqa: BLE001 - fail closed
            log.error("opa engine error, denying %r:%r for %r: %s", inp.host, inp.port, inp.binary, exc)
            return Decision.deny(f"policy engine error: {exc}", engine=ENGINE_NAME)

    def _connect(self, compiled: OpaCompiled, host: str, inp: ConnectInput) -> Decision:
        why = request_host_error(host)
        if why:
            return Decision.deny(f"{why}; connection refused", engine=ENGINE_NAME)
        if not 1 <= int(inp.port) <= 65535:
            return Decision.deny(f"port {inp.port} is out of range", engine=ENGINE_NAME)
        port = int(inp.port)
        res = compiled.query(
            NETWORK_QUERY,
            {
                "host": host,
                "port": port,
                "port_key": str(port),
                "binary": inp.binary,
                "ancestors": list(inp.ancestors),
            },
        )
        allowed = [(str(k), int(i)) for k, i in res.get("allowed", [])]
        if allowed:

            def rank(m: tuple[str, int]) -> tuple[str, int, int]:
                ep = compiled.rules[m[0]].endpoints[m[1]]
                return (m[0], _SPECIFICITY.get(host_kind(ep.host), 1), m[1])

            allowed.sort(key=rank)
            candidates = tuple((k, compiled.rules[k].endpoints[i]) for k, i in allowed)
            key0, ep0 = candidates[0]
            return Decision("allow", reason=f"allowed by policy {key0}", policy=key0, engine=ENGINE_NAME, endpoint=ep0, candidates=candidates)
        if not res.get("has_rules"):
            return Decision.deny("network connections not allowed by policy", engine=ENGINE_NAME)
        matched_keys = sorted({str(m[0]) for m in res.get("endpoint_matches", [])})
        target = _hostport(host, inp.port)
        if not matched_keys:
            return Decision.deny(f"endpoint {target} is not allowed by any policy", engine=ENGINE_NAME)
        ancestors = ", ".join(inp.ancestors) if inp.ancestors else "none"
        return Decision.deny(
            f"binary {inp.binary} is not allowed to reach {target}: no binary of policy "
            f"{', '.join(matched_keys)} matches it or its ancestors ({ancestors}); list the binary's "
            f"canonical path (readlink -f {inp.binary}) under binaries",
            engine=ENGINE_NAME,
        )

    # ------------------------------------------------------------------ L7

    def _endpoint_for(self, compiled: OpaCompiled, inp: RequestInput) -> tuple[int, Endpoint] | None:
        rule = compiled.rules.get(inp.policy_key)
        if rule is None:
            return None
        if inp.endpoint is not None:
            for i, ep in enumerate(rule.endpoints):
                if ep == inp.endpoint:
                    return i, ep
            return None
        d = self.decide_connect(compiled, inp.connect)
        for key, ep in d.candidates:
            if key == inp.policy_key:
                return rule.endpoints.index(ep), ep
        return None

    def decide_request(self, compiled: CompiledPolicy, inp: RequestInput) -> Decision:
        """Decide one HTTP request on an inspected endpoint (POLICY.md §3); never raises.

        The path is canonicalised again (idempotent) and refused when it cannot be.
        Results: ``allow``; ``deny`` with ``policy`` = the key, ``rule`` =
        ``"METHOD PATH"`` and a reason (containing ``deny rule`` when a deny rule
        fired); or ``audit`` instead of ``deny`` on an ``enforcement: audit`` endpoint.
        """
        method = inp.method.upper() if isinstance(inp.method, str) else repr(inp.method)
        try:
            if not isinstance(compiled, OpaCompiled):
                raise EngineError("policy was not compiled by the opa engine")
            malformed = _request_input_error(inp)
            if malformed:
                return Decision.deny(f"{malformed}; request refused", engine=ENGINE_NAME, policy=inp.policy_key, rule=f"{method} {inp.path}")
            found = self._endpoint_for(compiled, inp)
            if found is None:
                return Decision.deny(
                    f"policy {inp.policy_key} has no endpoint for {_hostport(normalise_host(inp.connect.host), inp.connect.port)}",
                    engine=ENGINE_NAME,
                    policy=inp.policy_key,
                    rule=f"{method} {inp.path}",
                )
            index, ep = found
            if ep.protocol != "rest":
                return Decision(
                    "allow", reason=f"allowed by policy {inp.policy_key} (endpoint not inspected)", policy=inp.policy_key, engine=ENGINE_NAME, endpoint=ep
                )
            try:
                path = canonical_path(inp.path)
            except PathError as exc:
                return self._l7_denial(ep, inp.policy_key, f"{method} {inp.path}", f"request path refused: {exc}")
            key = (inp.policy_key, index, method, path, tuple(inp.query))
            cached = compiled.request_cache.get(key)
            if cached is not None:
                return cached
            decision = self._request(compiled, inp.policy_key, index, ep, method, path, inp.query)
            compiled.request_cache.put(key, decision)
            return decision
        except Exception as exc:  # noqa: BLE001 - fail closed
            log.error("opa engine error, denying %s %s: %s", method, inp.path, exc)
            return Decision.deny(f"policy engine error: {exc}", engine=ENGINE_NAME, policy=inp.policy_key, rule=f"{method} {inp.path}")

    def _request(self, compiled: OpaCompiled, key: str, index: int, ep: Endpoint, method: str, path: str, query: tuple[tuple[str, str], ...]) -> Decision:
        multimap: dict[str, list[str]] = {}
        for k, v in query:
            multimap.setdefault(k, []).append(v)
        res = compiled.query(HTTP_QUERY, {"endpoint": endpoint_id(key, index), "method": method, "path": path, "query": multimap})
        rule = f"{method} {path}"
        denied_by = sorted(int(i) for i in res.get("denied_by", []))
        if denied_by:
            d = ep.deny_rules[denied_by[0]]
            return self._l7_denial(ep, key, rule, f"{rule} matches deny rule {d.method} {d.path} of policy {key}")
        if res.get("allowed_by"):
            return Decision("allow", reason=f"{rule} allowed by policy {key}", policy=key, engine=ENGINE_NAME, endpoint=ep, rule=rule)
        return self._l7_denial(ep, key, rule, f"{rule} not permitted by policy {key}: no allow rule matches")

    @staticmethod
    def _l7_denial(ep: Endpoint, key: str, rule: str, reason: str) -> Decision:
        if ep.enforcement == "audit":
            # forwarded, but logged as AUDIT (POLICY.md §3)
            return Decision("audit", reason=f"{reason} (audit only)", policy=key, engine=ENGINE_NAME, endpoint=ep, rule=rule)
        return Decision("deny", reason=reason, policy=key, error="policy_denied", engine=ENGINE_NAME, endpoint=ep, rule=rule)
