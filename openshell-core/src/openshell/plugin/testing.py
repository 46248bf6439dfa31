"""Test helpers for OpenShell plugin authors; also a pytest plugin (entry point ``pytest11``).

Fixtures (available in every pytest run where ``openshell-core`` is installed):

- ``plugin_manager`` — a fresh ``pluggy.PluginManager("openshell")`` with every hookspec.

Helpers:

- :func:`registered` — temporarily register hookimpls in the process registry.
- :class:`RecordingDriver` — a compute driver that starts nothing and records
  what the gateway asked of it (for gateway tests).
- Contract test classes, one per kind. A plugin's tests subclass one and set
  ``plugin_class``::

      from openshell.plugin.testing import AgentContract
      from openshell_plugin_claude import ClaudeAgent

      class TestClaudeContract(AgentContract):
          plugin_class = ClaudeAgent

Importing this module has no side effects (pytest loads it in every run of
every project that has ``openshell-core`` installed): the loader and the
plugins are imported only when a fixture or a test uses them.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from unittest import mock

try:
    import pytest
except ImportError:  # pragma: no cover - helpers still work without pytest
    pytest = None  # type: ignore[assignment]

from openshell.plugin.kinds import Agent, ComputeDriver, DriverContext, InferenceBackend, IsolationLayer, PolicyEngine, SandboxStatus, SshEndpoint, _Named

if TYPE_CHECKING:  # pragma: no cover
    import pluggy

    from openshell.plugin.loader import PluginInfo, Registry


# --------------------------------------------------------------------------- helpers

_counter = 0


@contextlib.contextmanager
def registered(*plugins: Any, registry: Registry | None = None) -> Iterator[Registry]:
    """Register modules or objects with hookimpls for the duration of a ``with`` block.

    Their classes become visible through ``registry.get_class``/``classes`` and their
    event hooks through ``registry.hook``; both are removed on exit, even on error.

    :param plugins: modules or objects carrying ``@hookimpl`` functions.
    :param registry: defaults to the process registry (``get_registry()``).
    :yields: the registry.
    :raises openshell.plugin.loader.PluginLoadError: when a plugin fails validation.
    """
    global _counter
    from openshell.plugin.loader import get_registry

    reg = registry if registry is not None else get_registry()
    keys: list[str] = []
    try:
        for plugin in plugins:
            _counter += 1
            label = getattr(plugin, "__name__", None) or type(plugin).__name__
            keys.append(reg.register_plugin(plugin, name=f"test:{label}#{_counter}").key)
        yield reg
    finally:
        for key in reversed(keys):
            reg.unregister_plugin(key)


class _NoIO(AssertionError):
    pass


@contextlib.contextmanager
def forbid_io() -> Iterator[None]:
    """Make sockets, DNS and subprocesses raise ``AssertionError`` inside the block."""

    def refuse(what: str):
        def raiser(*_args: Any, **_kwargs: Any) -> Any:
            raise _NoIO(f"registration must not do I/O, but it called {what}")

        return raiser

    targets = ["socket.socket", "socket.create_connection", "socket.getaddrinfo", "subprocess.Popen", "os.system"]
    with contextlib.ExitStack() as stack:
        for target in targets:
            stack.enter_context(mock.patch(target, refuse(target)))
        yield


def hookimpl_functions(module: Any) -> dict[str, Any]:
    """Return ``{attribute: function}`` for every ``@hookimpl`` in ``module``."""
    return {name: obj for name, obj in vars(module).items() if callable(obj) and getattr(obj, "openshell_impl", None) is not None}


# --------------------------------------------------------------------------- fixtures

if pytest is not None:

    @pytest.fixture
    def plugin_manager() -> pluggy.PluginManager:
        """A fresh ``pluggy.PluginManager("openshell")`` with every hookspec, nothing registered."""
        from openshell.plugin.loader import new_plugin_manager

        return new_plugin_manager()

    @pytest.fixture
    def models_server() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
        """A loopback OpenAI-style models endpoint for inference backend tests.

        Yields ``(base_url, seen)``: ``base_url`` ends in ``/v1``; ``GET /v1/models``
        answers one model ``m-1`` (other paths 404); ``seen`` collects
        ``(path, Authorization header or None)`` of every request.
        """
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        seen: list[tuple[str, str | None]] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                seen.append((self.path, self.headers.get("Authorization")))
                body = json.dumps({"object": "list", "data": [{"id": "m-1", "object": "model"}]}).encode()
                self.send_response(200 if self.path == "/v1/models" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_port}/v1", seen
        finally:
            server.shutdown()
            server.server_close()


# --------------------------------------------------------------------------- contracts


class _Contract:
    """Checks every plugin class must pass; subclass a per-kind contract, not this."""

    #: kind name (``agents``, ``inference``, ``isolation``, ``policy``, ``drivers``)
    kind: ClassVar[str] = ""
    #: the class under test; set by the subclass
    plugin_class: ClassVar[type[_Named]]
    #: kind -> entry-point group; only the contracts' own tests change it
    entry_point_groups: ClassVar[dict[str, str] | None] = None

    def _entry_point(self) -> PluginInfo:
        """The installed entry point whose module holds ``plugin_class``."""
        from openshell.plugin.loader import GROUPS, list_entry_points

        groups = self.entry_point_groups or GROUPS
        mod = self.plugin_class.__module__
        for info in list_entry_points(self.kind, groups=groups):
            if mod == info.module or mod.startswith(info.module + "."):
                return info
        raise AssertionError(
            f"no entry point in group {groups[self.kind]!r} points at {mod!r} (or a package above it); "
            f'declare it in pyproject.toml: [project.entry-points."{groups[self.kind]}"] '
            f'{getattr(self.plugin_class, "name", "<name>")} = "{mod.split(".")[0]}" and reinstall'
        )

    def test_name_and_summary_are_set(self) -> None:
        name = getattr(self.plugin_class, "name", None)
        assert isinstance(name, str) and name, f"{self.plugin_class.__qualname__}.name must be a non-empty str"
        assert name == name.strip().lower() and " " not in name, f"name {name!r} must be lower case, no spaces"
        summary = getattr(self.plugin_class, "summary", "")
        assert isinstance(summary, str) and summary.strip(), f"{self.plugin_class.__qualname__}.summary must be set"
        assert "\n" not in summary, "summary is one line (it is shown in listings)"

    def test_subclasses_the_kind_abc(self) -> None:
        from openshell.plugin.kinds import KINDS

        base = KINDS[self.kind].base
        assert issubclass(self.plugin_class, base), f"{self.plugin_class.__qualname__} must subclass {base.__name__}"

    def test_abstract_methods_are_implemented(self) -> None:
        missing = sorted(getattr(self.plugin_class, "__abstractmethods__", ()))
        assert not missing, f"{self.plugin_class.__qualname__} does not implement: {', '.join(missing)}"

    def test_entry_point_name_equals_name(self) -> None:
        info = self._entry_point()
        assert info.name == self.plugin_class.name, (
            f"entry point {info.name!r} and {self.plugin_class.__qualname__}.name {self.plugin_class.name!r} differ; "
            "the entry-point name is the public name, so they must be equal"
        )

    def test_hook_arguments_have_no_defaults(self) -> None:
        module = importlib.import_module(self._entry_point().module)
        for attr, func in hookimpl_functions(module).items():
            for param in inspect.signature(func).parameters.values():
                assert param.default is inspect.Parameter.empty, f"hook {attr}() gives {param.name!r} a default; pluggy does not pass such arguments"

    def test_registration_does_no_io_and_registers_the_class(self) -> None:
        from openshell.plugin.loader import (
            collect_classes,
            new_plugin_manager,
            register_module,
        )

        info = self._entry_point()
        module = importlib.import_module(info.module)
        pm = new_plugin_manager()
        error = register_module(pm, module, info.key)  # includes check_pending()
        assert not error, f"plugin module {info.module} fails validation: {error}"
        with forbid_io():
            classes, error = collect_classes(pm, info.key, self.kind)
        assert not error, error
        assert self.plugin_class in classes, f"{info.module}'s registration hook did not register {self.plugin_class.__qualname__}"


class AgentContract(_Contract):
    """Contract tests for an ``Agent`` class."""

    kind = "agents"
    plugin_class: ClassVar[type[Agent]]

    def test_argv_is_a_list_of_strings(self) -> None:
        argv = self.plugin_class().argv(["--version"])
        assert isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)
        assert argv[-1] == "--version", "extra arguments are appended"

    def test_inference_env_is_strings(self) -> None:
        env = self.plugin_class().inference_env("https://inference.local/v1")
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())

    def test_inference_protocols_are_known(self) -> None:
        protocols = set(self.plugin_class.inference_protocols)
        assert protocols <= {"openai", "anthropic"}, f"unknown inference protocols: {protocols - {'openai', 'anthropic'}}"

    def test_provider_types_are_names(self) -> None:
        types = self.plugin_class.provider_types
        assert isinstance(types, tuple) and all(isinstance(t, str) and t and t == t.lower() for t in types)

    def test_policy_fragment_merges_into_a_valid_policy(self) -> None:
        from openshell.agents.fragment import merge_fragment

        fragment = self.plugin_class().policy_fragment()
        assert isinstance(fragment, dict)
        merged = merge_fragment(None, fragment)  # raises PolicyError naming the bad field
        assert sorted(merged.added) == sorted(fragment)
        for key in fragment:
            rule = next(r for r in merged.policy.network if r.key == key)
            assert rule.binaries, f"rule {key!r} names no binaries, so it would match nothing"
            assert all(b.path != "/**" for b in rule.binaries), f"rule {key!r} allows every binary"

    def test_home_files_are_relative_text(self) -> None:
        import posixpath

        agent = self.plugin_class()
        assert agent.home_files(None) == {} or isinstance(agent.home_files(None), dict)
        for path, text in agent.home_files("https://inference.local").items():
            assert isinstance(path, str) and isinstance(text, str)
            assert path and not path.startswith("/") and ".." not in path.split("/"), f"{path!r} must stay under HOME"
            assert posixpath.normpath(path) == path

    def test_detect_returns_a_bool(self) -> None:
        assert isinstance(self.plugin_class().detect(), bool)


class InferenceBackendContract(_Contract):
    """Contract tests for an ``InferenceBackend`` class."""

    kind = "inference"
    plugin_class: ClassVar[type[InferenceBackend]]

    def test_protocols_are_known(self) -> None:
        protocols = set(self.plugin_class.protocols)
        assert protocols and protocols <= {"openai", "anthropic"}, f"unknown protocols: {protocols}"


class IsolationLayerContract(_Contract):
    """Contract tests for an ``IsolationLayer`` class."""

    kind = "isolation"
    plugin_class: ClassVar[type[IsolationLayer]]

    def test_order_is_an_int(self) -> None:
        assert isinstance(self.plugin_class.order, int)

    def test_probe_returns_a_probe_result(self) -> None:
        from openshell.plugin.kinds import ProbeResult

        result = self.plugin_class().probe()
        assert isinstance(result, ProbeResult) and isinstance(result.detail, str)


#: a policy every engine must handle: curl may reach api.example.test:443, with
#: one inspected REST endpoint allowing only ``GET /v1/**``
CONTRACT_POLICY: dict[str, Any] = {
    "version": 1,
    "network_policies": {
        "api": {
            "endpoints": [{"host": "api.example.test", "port": 443}],
            "binaries": [{"path": "/usr/bin/curl"}],
        },
        "rest": {
            "endpoints": [
                {
                    "host": "rest.example.test",
                    "port": 80,
                    "protocol": "rest",
                    "enforcement": "enforce",
                    "rules": [{"allow": {"method": "GET", "path": "/v1/**"}}],
                }
            ],
            "binaries": [{"path": "/usr/bin/curl"}],
        },
    },
}

#: connection inputs an engine may meet from a hostile sandbox or a buggy caller;
#: each must be answered with a deny, never an exception
HOSTILE_CONNECTS: tuple[tuple[Any, Any, Any, Any], ...] = (
    ("", 443, "/usr/bin/curl", ()),
    ("api.example.test", 0, "/usr/bin/curl", ()),
    ("api.example.test", -1, "/usr/bin/curl", ()),
    ("api.example.test", 70000, "/usr/bin/curl", ()),
    ("api.example.test", 443, "", ()),
    ("api.example.test", 443, "/usr/bin/../bin/curl-not", ()),
    ("api.example.test\x00.evil.test", 443, "/usr/bin/curl", ()),
    ("a" * 5000 + ".test", 443, "/usr/bin/curl", ()),
    ("*.example.test", 443, "/usr/bin/curl", ()),
    ("api.example.test.evil.test", 443, "/usr/bin/curl", ()),
    ("\u0430pi.example.test", 443, "/usr/bin/curl", ()),  # Cyrillic a
    (None, 443, "/usr/bin/curl", ()),
    ("api.example.test", "443", "/usr/bin/curl", ()),
    ("api.example.test", 443, None, None),
    ("api.example.test", 443, "/usr/bin/wget", ("/bin/sh", None, 7)),
)

#: (method, path, query) of HTTP requests that ``CONTRACT_POLICY`` does not allow,
#: many of them malformed; each must be denied, never raise
HOSTILE_REQUESTS: tuple[tuple[Any, Any, Any], ...] = (
    ("POST", "/v1/models", ()),
    ("GET", "/v2/models", ()),
    ("GET", "", ()),
    ("GET", "../v1/models", ()),
    ("GET", "/v1/../../etc/passwd", ()),
    ("GET", "/v1/%2e%2e/%2e%2e/admin", ()),
    ("GET", "/v1/\x00", ()),
    ("", "/v1/models", ()),
    ("get /v1/models", "/v1/models", ()),
    (None, None, None),
    ("GET", "/v2/" + "v1/" * 3000, (("k", "v" * 10000),)),
    ("GET", "/v1/models", (("only-a-key",),)),
)


def _is_decision(value: Any) -> bool:
    from openshell.policy.decision import Decision

    return isinstance(value, Decision)


class PolicyEngineContract(_Contract):
    """Contract tests for a ``PolicyEngine`` class.

    The engine is instantiated with no arguments and loads :data:`CONTRACT_POLICY`.
    Every ``decide_*`` call must return a ``Decision``: the ABC says errors deny,
    so malformed or hostile input gets ``deny``, never an exception.
    """

    kind = "policy"
    plugin_class: ClassVar[type[PolicyEngine]]

    def engine(self) -> Any:
        """The engine under test; override when the class needs arguments."""
        return self.plugin_class()

    def compiled(self) -> Any:
        from openshell.policy import parse_policy

        return self.engine().load(parse_policy(CONTRACT_POLICY), 7)

    def test_load_returns_a_compiled_policy_with_its_version(self) -> None:
        from openshell.plugin.kinds import CompiledPolicy

        compiled = self.compiled()
        assert isinstance(compiled, CompiledPolicy), f"load() returned {type(compiled).__name__}, not a CompiledPolicy"
        assert compiled.version == 7 and compiled.policy.network, "load() must keep the policy and its version"

    def test_connect_allowed_by_a_matching_rule(self) -> None:
        from openshell.policy.decision import ConnectInput

        engine = self.engine()
        decision = engine.decide_connect(self.compiled(), ConnectInput("api.example.test", 443, "/usr/bin/curl"))
        assert _is_decision(decision) and decision.allowed, f"a connection the policy allows was refused: {decision}"
        assert decision.policy == "api", "an allow names the rule key that matched"

    def test_prepare_changes_no_decision(self) -> None:
        from openshell.policy import parse_policy
        from openshell.policy.decision import ConnectInput

        engine = self.engine()
        policy = parse_policy(CONTRACT_POLICY)
        engine.prepare(policy)  # what a warm parent does before it forks
        allowed, denied = ConnectInput("api.example.test", 443, "/usr/bin/curl"), ConnectInput("api.example.test", 443, "/usr/bin/wget")
        for compiled in (engine.load(policy, 7), engine.load(policy, 8), engine.load(parse_policy({"version": 1}), 9)):
            got = (engine.decide_connect(compiled, allowed).allowed, engine.decide_connect(compiled, denied).allowed)
            want = (bool(compiled.policy.network), False)
            assert got == want, f"after prepare(), revision {compiled.version} decided {got} where load() alone decides {want}"

    def test_connect_denied_without_a_matching_rule(self) -> None:
        from openshell.policy.decision import ConnectInput

        engine = self.engine()
        compiled = self.compiled()
        for inp in (
            ConnectInput("api.example.test", 443, "/usr/bin/wget"),  # binary not in the rule
            ConnectInput("api.example.test", 8443, "/usr/bin/curl"),  # port not in the rule
            ConnectInput("other.example.test", 443, "/usr/bin/curl"),  # host not in any rule
        ):
            decision = engine.decide_connect(compiled, inp)
            assert _is_decision(decision) and not decision.allowed, f"{inp} must be denied, got {decision}"
            assert decision.reason, "a denial says why (it reaches the sandbox's 403 body and the logs)"

    def test_hostile_connect_input_is_denied_not_raised(self) -> None:
        from openshell.policy.decision import ConnectInput

        engine = self.engine()
        compiled = self.compiled()
        for host, port, binary, ancestors in HOSTILE_CONNECTS:
            inp = ConnectInput(host, port, binary, ancestors)
            try:
                decision = engine.decide_connect(compiled, inp)
            except Exception as exc:  # noqa: BLE001 - the contract is "must not raise"
                raise AssertionError(f"decide_connect({inp!r}) raised {type(exc).__name__}: {exc}; it must deny") from exc
            assert _is_decision(decision), f"decide_connect({inp!r}) returned {decision!r}, not a Decision"
            assert not decision.allowed, f"decide_connect({inp!r}) allowed a malformed connection"

    def test_decide_connect_with_a_foreign_compiled_policy_denies(self) -> None:
        from openshell.plugin.kinds import CompiledPolicy
        from openshell.policy import parse_policy
        from openshell.policy.decision import ConnectInput

        foreign = CompiledPolicy(parse_policy(CONTRACT_POLICY), 1)  # not what this engine's load() made
        try:
            decision = self.engine().decide_connect(foreign, ConnectInput("other.example.test", 443, "/usr/bin/curl"))
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"decide_connect with another engine's compiled policy raised {type(exc).__name__}: {exc}") from exc
        assert _is_decision(decision) and not decision.allowed

    def test_hostile_request_is_denied_not_raised(self) -> None:
        from openshell.policy.decision import ConnectInput, RequestInput

        engine = self.engine()
        compiled = self.compiled()
        connect = ConnectInput("rest.example.test", 80, "/usr/bin/curl")
        for method, path, query in HOSTILE_REQUESTS:
            for key in ("rest", "api", "no-such-rule", ""):
                inp = RequestInput(connect, key, method, path, query)
                try:
                    decision = engine.decide_request(compiled, inp)
                except Exception as exc:  # noqa: BLE001
                    raise AssertionError(f"decide_request({inp!r:.300}) raised {type(exc).__name__}: {exc}; it must deny") from exc
                assert _is_decision(decision), f"decide_request returned {decision!r}, not a Decision"
                assert not decision.allowed, f"decide_request allowed {method!r} {path!r:.200} (rule {key!r})"


def _unused_id() -> str:
    # random, so a driver's cleanup of "this id" can never touch another test's sandbox
    import uuid

    return str(uuid.uuid4())


class ComputeDriverContract(_Contract):
    """Contract tests for a ``ComputeDriver`` class.

    The driver is constructed as ``plugin_class(DriverContext(...))`` with a fresh
    state directory under pytest's ``tmp_path`` (override :meth:`driver_context`
    when it needs more); ``close()`` is called afterwards when it has one.
    ``test_created_sandbox_deletes_twice`` starts a real sandbox from
    :meth:`sandbox_record` (what the gateway passes to ``create``) whose
    gateway endpoint answers nothing, so the sandbox never becomes READY.
    """

    kind = "drivers"
    plugin_class: ClassVar[type[ComputeDriver]]

    def driver_context(self, tmp_path: Any) -> DriverContext:
        """The ``DriverContext`` the driver is built with (state under ``tmp_path``)."""
        return DriverContext(state_dir=str(tmp_path / "state"), gateway_endpoint="https://127.0.0.1:1")

    def sandbox_record(self, sandbox_id: str) -> dict[str, Any]:
        """What ``create`` receives, shaped like the gateway's (``SandboxRecord.driver_view``)."""
        import secrets

        return {
            "id": sandbox_id,
            "name": "contract",
            "workspace": "default",
            "labels": {},
            "spec": {"command": [], "environment": {}, "extra_hosts": [], "log_level": ""},
            "secret": secrets.token_hex(32),
            "netns_index": 254,
            "policy_yaml": "version: 1\n",
        }

    @contextlib.contextmanager
    def _driver(self, tmp_path: Any) -> Iterator[ComputeDriver]:
        drv = self.plugin_class(self.driver_context(tmp_path))
        try:
            yield drv
        finally:
            close = getattr(drv, "close", None)
            if callable(close):
                close()

    def test_delete_of_an_unknown_id_succeeds(self, tmp_path: Any) -> None:
        with self._driver(tmp_path) as driver:
            driver.delete(_unused_id())
            driver.delete(_unused_id(), keep_workdir=True)

    def test_status_of_an_unknown_id_is_a_defined_phase(self, tmp_path: Any) -> None:
        from openshell.plugin.kinds import SANDBOX_PHASES

        with self._driver(tmp_path) as driver:
            status = driver.status(_unused_id())
        assert isinstance(status, SandboxStatus), f"status() returned {status!r}, not a SandboxStatus"
        assert status.phase in SANDBOX_PHASES, f"phase {status.phase!r} is not one of {SANDBOX_PHASES}"
        assert status.phase not in ("READY", "PROVISIONING"), "a sandbox the driver never started is not READY or PROVISIONING"
        assert status.reason, "say why (ERROR/STOPPED carry a reason)"

    def test_ssh_endpoint_names_exactly_one_address(self, tmp_path: Any) -> None:
        with self._driver(tmp_path) as driver:
            ep = driver.ssh_endpoint(_unused_id())
        assert isinstance(ep, SshEndpoint)
        assert bool(ep.unix_path) != bool(ep.host and ep.port), f"exactly one of unix_path or host/port: {ep}"

    def test_created_sandbox_deletes_twice(self, tmp_path: Any) -> None:
        from openshell.plugin.kinds import SANDBOX_PHASES

        sid = _unused_id()
        with self._driver(tmp_path) as driver:
            try:
                driver.create(self.sandbox_record(sid))
                assert driver.status(sid).phase in SANDBOX_PHASES
            finally:
                driver.delete(sid)
            driver.delete(sid)  # idempotent
            after = driver.status(sid)
        assert after.phase in SANDBOX_PHASES and after.phase not in ("READY", "PROVISIONING"), f"status after delete: {after}"

    def test_stop_keeps_a_sandbox_that_start_runs_again(self, tmp_path: Any) -> None:
        """``stop``/``start`` (optional: a driver keeping the ABC's defaults is skipped).

        After ``stop`` the status is STOPPED with a reason (twice: idempotent);
        after ``start`` it is not STOPPED (its supervisor runs again; with the
        contract's unreachable gateway it may fail soon after, ERROR);
        ``delete`` still removes it.
        """
        from openshell.plugin.kinds import DriverUnsupported

        if getattr(self.plugin_class, "stop", None) is ComputeDriver.stop:
            pytest.skip("this driver cannot stop sandboxes (ComputeDriver.stop default)")
        sid = _unused_id()
        record = self.sandbox_record(sid)
        with self._driver(tmp_path) as driver:
            try:
                driver.create(record)
                driver.stop(sid)
                stopped = driver.status(sid)
                assert stopped.phase == "STOPPED" and stopped.reason, f"status after stop: {stopped}"
                driver.stop(sid)  # idempotent
                assert driver.status(sid).phase == "STOPPED"
                try:
                    driver.start(record)
                except DriverUnsupported:
                    pytest.fail("a driver that can stop sandboxes must start them again")
                again = driver.status(sid)
                assert again.phase != "STOPPED", f"status after start: {again}"
            finally:
                driver.delete(sid)
            after = driver.status(sid)
        assert after.phase not in ("READY", "PROVISIONING"), f"status after delete: {after}"


__all__ = [
    "AgentContract",
    "ComputeDriverContract",
    "InferenceBackendContract",
    "IsolationLayerContract",
    "PolicyEngineContract",
    "RecordingDriver",
    "forbid_io",
    "hookimpl_functions",
    "registered",
]


class RecordingDriver(ComputeDriver):
    """A compute driver that starts nothing and records what the gateway asked.

    :ivar created: sandbox id → the record passed to ``create``.
    :ivar deleted: sandbox ids passed to ``delete``, in order; ``kept_workdirs``
        those deleted with ``keep_workdir=True``.
    :ivar statuses: sandbox id → what ``status`` reports (default PROVISIONING).
    :ivar fail_create: when True, ``create`` raises ``OSError("no room")``.
    :ivar stopped, started: sandbox ids passed to ``stop`` and ``start``, in order;
        ``stop`` makes ``status`` report STOPPED, ``start`` PROVISIONING again.
    """

    name = "recording"
    summary = "records create/delete calls; starts nothing (tests)"

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.created: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.kept_workdirs: list[str] = []
        self.statuses: dict[str, SandboxStatus] = {}
        self.fail_create = False
        self.stopped: list[str] = []
        self.started: list[str] = []

    def create(self, sandbox: Mapping[str, Any]) -> None:
        if self.fail_create:
            raise OSError("no room")
        self.created[sandbox["id"]] = dict(sandbox)

    def delete(self, sandbox_id: str, keep_workdir: bool = False) -> None:
        self.deleted.append(sandbox_id)
        if keep_workdir:
            self.kept_workdirs.append(sandbox_id)

    def status(self, sandbox_id: str) -> SandboxStatus:
        return self.statuses.get(sandbox_id, SandboxStatus("PROVISIONING"))

    def stop(self, sandbox_id: str) -> None:
        self.stopped.append(sandbox_id)
        self.statuses[sandbox_id] = SandboxStatus("STOPPED", "stopped on request")

    def start(self, sandbox: Mapping[str, Any]) -> None:
        self.started.append(sandbox["id"])
        self.statuses.pop(sandbox["id"], None)

    def ssh_endpoint(self, sandbox_id: str) -> SshEndpoint:
        return SshEndpoint(unix_path=f"/nonexistent/{sandbox_id}.sock")
