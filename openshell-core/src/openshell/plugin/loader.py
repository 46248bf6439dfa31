"""Find, load and register OpenShell plugins (DESIGN.md §3).

Discovery is stevedore over one entry-point group per kind; calling is one
``pluggy.PluginManager("openshell")``. The flow of :func:`get_registry`:

1. read entry-point metadata (:func:`list_entry_points`; no imports);
2. import every enabled entry point with a stevedore manager whose load-failure
   callback records the error instead of raising;
3. register each module with pluggy as ``"<kind>:<name>"`` and run
   ``check_pending()`` so a misspelt hook fails that plugin loudly;
4. call the registration hooks plugin by plugin and keep the classes that
   subclass the kind's ABC.

A failure in any step marks only that plugin ``failed`` (with the exception's
first line) and logs one warning; ``OPENSHELL_STRICT_PLUGINS=1`` turns it into
:class:`PluginLoadError`. ``OPENSHELL_DISABLE_PLUGINS=a,kind:b`` keeps plugins
from being imported at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal, overload

import pluggy

from openshell.plugin import PLUGIN_API_VERSION, hookspecs
from openshell.plugin.kinds import KINDS, Agent, ComputeDriver, InferenceBackend, IsolationLayer, PolicyEngine, _Named

log = logging.getLogger("openshell.plugin")

#: kind name -> entry-point group (the default ``groups`` of the functions below;
#: tests pass their own mapping)
GROUPS: Mapping[str, str] = MappingProxyType({k.name: k.group for k in KINDS.values()})

ENV_DISABLE = "OPENSHELL_DISABLE_PLUGINS"
ENV_STRICT = "OPENSHELL_STRICT_PLUGINS"

LOADED, FAILED, DISABLED, AVAILABLE = "loaded", "failed", "disabled", "available"


# --------------------------------------------------------------------------- errors


class PluginError(Exception):
    """Base class of every plugin error; the message is one line naming the fix."""


class PluginNotFound(PluginError, LookupError):
    """No usable class of that kind and name (not installed, failed or disabled)."""


class PluginLoadError(PluginError, RuntimeError):
    """A plugin failed to load where that is fatal (strict mode, or a fail-closed kind)."""


# --------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """One entry point of one kind, and what became of it.

    :ivar kind: a key of :data:`~openshell.plugin.kinds.KINDS` (empty for objects registered by hand, e.g. in tests).
    :ivar name: the entry-point name, which is the plugin's public name.
    :ivar distribution: the installed distribution that declares it (may be empty).
    :ivar version: that distribution's version (may be empty).
    :ivar module: the entry-point value, the plugin module's import path.
    :ivar status: ``available`` (listed, not loaded), ``loaded``, ``failed`` or ``disabled``.
    :ivar error: for ``failed``, the exception's first line; otherwise empty.
    :ivar classes: ``"<kind>:<name>"`` of every class the plugin registered.
    """

    kind: str
    name: str
    distribution: str
    version: str
    module: str
    status: str = AVAILABLE
    error: str = ""
    classes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The pluggy plugin name, ``"<kind>:<name>"``."""
        return f"{self.kind}:{self.name}" if self.kind else self.name

    def to_dict(self) -> dict[str, Any]:
        """Return the record as plain data (for ``-o json|yaml``)."""
        return {**dataclasses.asdict(self), "classes": list(self.classes)}


# --------------------------------------------------------------------------- env


#: plugins the OpenShell project itself publishes as ``openshell-plugin-<name>``
FIRST_PARTY_PLUGINS = frozenset({"claude", "codex", "opencode", "openclaw", "nim", "vllm", "lmstudio", "netns", "landlock", "seccomp", "opa"})


def install_hint(name: str) -> str:
    """How to get plugin ``name``: a pip command only for first-party names.

    Suggesting ``pip install openshell-plugin-<anything typed>`` would send a
    typo to whatever package someone registered under that name.
    """
    if name in FIRST_PARTY_PLUGINS:
        return f"install it with: pip install openshell-plugin-{name}"
    return "check the name with 'openshell plugins list'"


def strict_mode() -> bool:
    """Return True when ``OPENSHELL_STRICT_PLUGINS`` asks for fatal load failures."""
    return os.environ.get(ENV_STRICT, "").strip().lower() in {"1", "true", "yes", "on"}


def disabled_plugins() -> frozenset[str]:
    """Return the entries of ``OPENSHELL_DISABLE_PLUGINS`` (``name`` or ``kind:name``)."""
    raw = os.environ.get(ENV_DISABLE, "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _is_disabled(info: PluginInfo, disabled: frozenset[str]) -> bool:
    return info.name in disabled or info.key in disabled


def first_line(exc: BaseException) -> str:
    """Return ``"ExcType: first line of message"`` — what listings show for a failure."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --------------------------------------------------------------------------- discovery


def list_entry_points(kind: str | None = None, *, groups: Mapping[str, str] = GROUPS) -> list[PluginInfo]:
    """List installed plugins from entry-point metadata only (nothing is imported).

    :param kind: one kind name, or None for every kind.
    :param groups: kind -> entry-point group (tests pass their own groups).
    :returns: one :class:`PluginInfo` (status ``available``) per entry point, sorted
        by kind order then name.
    :raises ValueError: for an unknown ``kind``.
    """
    if kind is not None and kind not in groups:
        raise ValueError(f"unknown plugin kind {kind!r}; kinds: {', '.join(groups)}")
    import importlib.metadata  # here, not at the top: ~15 ms the supervisor's select_module never needs

    infos: list[PluginInfo] = []
    seen: set[tuple[str, str, str]] = set()
    for dist in importlib.metadata.distributions():
        dist_name = dist.metadata["Name"] or ""
        for ep in dist.entry_points:
            for k, group in groups.items():
                if ep.group != group or (kind is not None and k != kind):
                    continue
                # The same dist can be visible twice on sys.path (editable + src dir).
                if (k, ep.name, ep.value) in seen:
                    continue
                seen.add((k, ep.name, ep.value))
                infos.append(PluginInfo(k, ep.name, dist_name, dist.version or "", ep.value))
    order = {k: i for i, k in enumerate(groups)}
    infos.sort(key=lambda i: (order[i.kind], i.name, i.distribution))
    return infos


# --------------------------------------------------------------------------- loading


def _api_error(module: Any) -> str:
    declared = getattr(module, "OPENSHELL_PLUGIN_API", None)
    if declared is None:
        return ""
    try:
        major = int(str(declared).split(".")[0])
    except ValueError:
        return f"incompatible plugin API: OPENSHELL_PLUGIN_API = {declared!r} is not a version number"
    if major != PLUGIN_API_VERSION:
        return (
            f"incompatible plugin API: the plugin needs API {major}, this openshell-core provides "
            f"{PLUGIN_API_VERSION}; install a release of the plugin built for API {PLUGIN_API_VERSION}"
        )
    return ""


def new_plugin_manager() -> pluggy.PluginManager:
    """Return an empty ``pluggy.PluginManager("openshell")`` that knows every hookspec."""
    pm = pluggy.PluginManager("openshell")
    pm.add_hookspecs(hookspecs)
    return pm


def register_module(pm: pluggy.PluginManager, module: Any, key: str) -> str:
    """Register ``module`` with ``pm`` as ``key`` and validate its hookimpls.

    :returns: empty string on success, else the error's first line; on error the
        module is left unregistered.
    """
    api = _api_error(module)
    if api:
        return api
    if pm.get_name(module) is not None:
        return ""  # one module behind two entry points: already registered
    try:
        pm.register(module, name=key)
    except Exception as exc:  # noqa: BLE001 - pluggy validation errors, bad plugin objects
        return first_line(exc)
    try:
        pm.check_pending()
        for caller in pm.get_hookcallers(module) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is module and impl.kwargnames:
                    # pluggy passes only arguments without defaults, so the
                    # plugin would silently get its default instead of ours.
                    raise pluggy.PluginValidationError(
                        module,
                        f"hook {caller.name}() gives argument(s) {', '.join(impl.kwargnames)} a default; pluggy does not pass those — remove the default",
                    )
    except Exception as exc:  # noqa: BLE001
        pm.unregister(module)
        return first_line(exc)
    return ""


def registration_arguments(register: Callable[[Any], None]) -> dict[str, Any]:
    """Return the keyword arguments every registration hook is called with.

    Implementations are bound by argument name, as pluggy binds them: a hook
    gaining an argument in a later release does not break a plugin that takes
    only ``register``.
    """
    return {"register": register}


def collect_classes(pm: pluggy.PluginManager, plugin_name: str, kind: str) -> tuple[list[type[_Named]], str]:
    """Run ``plugin_name``'s registration hook for ``kind`` and check what it registers.

    Each implementation is called on its own (not through a fan-out) so a
    failure is pinned on the plugin that caused it and spares the others. It
    receives, by name, the arguments it declares (a subset of the hookspec's).

    :returns: ``(classes, error)``; ``error`` is empty on success.
    """
    spec = KINDS[kind]
    caller = getattr(pm.hook, spec.hook)
    found: list[type[_Named]] = []

    def register(cls: Any) -> None:
        if not isinstance(cls, type) or not issubclass(cls, spec.base):
            raise TypeError(f"{spec.hook}: {cls!r} is not a subclass of openshell.plugin.{spec.base.__name__}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{spec.hook}: {cls.__qualname__} has no 'name'")
        found.append(cls)

    available = registration_arguments(register)
    for impl in caller.get_hookimpls():
        if impl.plugin_name != plugin_name or impl.hookwrapper or impl.wrapper:
            continue
        unknown = [arg for arg in impl.argnames if arg not in available]
        if unknown:
            return [], f"{spec.hook}() takes argument(s) {', '.join(unknown)} that OpenShell does not pass; it passes {', '.join(available)}"
        try:
            impl.function(**{arg: available[arg] for arg in impl.argnames})
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit in a plugin must not end the CLI
            return [], first_line(exc)
    return found, ""


@contextlib.contextmanager
def _stdout_to_stderr():
    # A plugin that prints on import must not corrupt `-o json` output.
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = saved


# --------------------------------------------------------------------------- registry


class Registry:
    """Every installed plugin, loaded, with the classes it registered.

    Build one with :func:`get_registry` (process-wide) or :meth:`Registry.load`.

    :ivar pm: the ``pluggy.PluginManager("openshell")``.
    :ivar hook: ``pm.hook``, for event hooks and ``register_commands``.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.hook = pm.hook
        self._infos: dict[str, PluginInfo] = {}
        self._classes: dict[str, dict[str, type[_Named]]] = {k: {} for k in KINDS}
        self._owners: dict[tuple[str, str], str] = {}  # (kind, class name) -> plugin key

    # ------------------------------------------------------------------ building

    @classmethod
    def load(
        cls,
        *,
        groups: Mapping[str, str] = GROUPS,
        disabled: frozenset[str] | None = None,
        strict: bool | None = None,
    ) -> Registry:
        """Load every installed plugin.

        :param groups: kind -> entry-point group (tests pass their own).
        :param disabled: names or ``kind:name`` never to import; default from the env.
        :param strict: raise on any failure; default from ``OPENSHELL_STRICT_PLUGINS``.
        :raises PluginLoadError: in strict mode, naming the first plugin that failed.
        """
        disabled = disabled_plugins() if disabled is None else disabled
        strict = strict_mode() if strict is None else strict
        reg = cls(new_plugin_manager())
        from openshell.plugin import _managers

        infos = list_entry_points(groups=groups)
        _managers.forget_stevedore_cache(groups.values())
        modules: dict[str, Any] = {}
        for kind, group in groups.items():
            wanted = [i for i in infos if i.kind == kind]
            for info in wanted:
                reg._infos[info.key] = info
            enabled = [i for i in wanted if not _is_disabled(i, disabled)]
            for info in wanted:
                if _is_disabled(info, disabled):
                    reg._set(info.key, status=DISABLED)
            if not enabled:
                continue
            failures: dict[tuple[str, str], BaseException] = {}

            def on_failure(_mgr: Any, ep: Any, exc: BaseException, _f=failures) -> None:
                _f[(ep.name, ep.value)] = exc.exc if isinstance(exc, _managers.LoadFailure) else exc

            with _stdout_to_stderr():
                mgr = _managers.Manager(
                    group,
                    names=[i.name for i in enabled],
                    invoke_on_load=False,
                    on_load_failure_callback=on_failure,
                    # Each plugin that did not load is reported below, once, with its error;
                    # stevedore's own "Could not load NAME" would say it a second time.
                    on_missing_entrypoints_callback=_nothing,  # (None is not enough before stevedore 5.6)
                )
            loaded = {(ext.name, ext.entry_point.value): ext.plugin for ext in mgr.extensions}
            for info in enabled:
                ident = (info.name, info.module)
                if ident in failures:
                    reg._fail(info.key, first_line(failures[ident]), strict)
                elif ident in loaded:
                    modules[info.key] = loaded[ident]
                else:
                    reg._fail(info.key, "entry point not found by stevedore; reinstall the plugin", strict)
        for key, module in modules.items():
            error = register_module(reg.pm, module, key)
            if error:
                reg._fail(key, error, strict)
        for key in modules:
            if reg._infos[key].status != FAILED:
                reg._collect(key, strict)
        for key in modules:
            if reg._infos[key].status == AVAILABLE:
                reg._set(key, status=LOADED)
        return reg

    def fail_plugin(self, key: str, error: str) -> None:
        """Mark plugin ``key`` failed after it loaded (its ``register_commands`` raised):
        its hooks and classes are dropped and a warning names it, as for a load failure.

        :raises PluginLoadError: in strict mode (``OPENSHELL_STRICT_PLUGINS``).
        """
        if key in self._infos:
            self._fail(key, error, strict_mode())

    def _set(self, key: str, **changes: Any) -> None:
        self._infos[key] = dataclasses.replace(self._infos[key], **changes)

    def _fail(self, key: str, error: str, strict: bool) -> None:
        self._set(key, status=FAILED, error=error)
        plugin = self.pm.get_plugin(key)
        if plugin is not None:
            # A failed plugin's other hooks (commands, events) must not run either.
            self.pm.unregister(name=key)
        self._drop_classes(key)
        message = f"plugin {key} failed to load: {error}"
        if strict:
            raise PluginLoadError(f"{message} ({ENV_STRICT} is set)")
        log.warning("%s (skipped; see 'openshell plugins list')", message)

    def _drop_classes(self, key: str) -> None:
        for (kind, name), owner in list(self._owners.items()):
            if owner == key:
                del self._owners[(kind, name)]
                del self._classes[kind][name]

    def _collect(self, key: str, strict: bool) -> None:
        added: list[tuple[str, type[_Named]]] = []
        for kind in KINDS:
            classes, error = collect_classes(self.pm, key, kind)
            for cls in [] if error else classes:
                owner = self._owners.get((kind, cls.name))
                if owner is not None and owner != key:
                    error = f"{KINDS[kind].noun} {cls.name!r} is already registered by plugin {owner}"
                    break
            if error:
                self._fail(key, error, strict)  # also drops what this plugin added so far
                return
            for cls in classes:
                self._classes[kind][cls.name] = cls
                self._owners[(kind, cls.name)] = key
                added.append((kind, cls))
        if key in self._infos:
            self._set(key, classes=tuple(f"{k}:{c.name}" for k, c in added))

    # ------------------------------------------------------------------ by hand (tests)

    def register_plugin(self, plugin: Any, name: str | None = None) -> PluginInfo:
        """Register a module or object with hookimpls, as if it were installed.

        :param name: pluggy name; defaults to ``"manual:<module or class name>"``.
        :returns: its :class:`PluginInfo` (kind empty).
        :raises PluginLoadError: when it fails validation or registers a bad class.
        """
        mod_name = getattr(plugin, "__name__", None) or type(plugin).__name__
        key = name or f"manual:{mod_name}"
        self._infos[key] = PluginInfo("", key, "", "", mod_name)
        error = register_module(self.pm, plugin, key)
        if error:
            self._infos.pop(key)
            raise PluginLoadError(f"plugin {key} failed to load: {error}")
        try:
            self._collect(key, strict=True)
        except PluginLoadError:
            self._infos.pop(key, None)
            raise
        self._set(key, status=LOADED)
        return self._infos[key]

    def unregister_plugin(self, name: str) -> None:
        """Undo :meth:`register_plugin` (or drop a loaded plugin) by its pluggy name."""
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        self._drop_classes(name)
        if name in self._infos and not self._infos[name].kind:
            del self._infos[name]

    # ------------------------------------------------------------------ queries

    @property
    def infos(self) -> list[PluginInfo]:
        """Every installed plugin (and any registered by hand), in listing order."""
        return list(self._infos.values())

    def info(self, kind: str, name: str) -> PluginInfo | None:
        """Return the entry point ``kind:name``, or None when not installed."""
        return self._infos.get(f"{kind}:{name}")

    @overload
    def classes(self, kind: Literal["agents"]) -> dict[str, type[Agent]]: ...
    @overload
    def classes(self, kind: Literal["inference"]) -> dict[str, type[InferenceBackend]]: ...
    @overload
    def classes(self, kind: Literal["isolation"]) -> dict[str, type[IsolationLayer]]: ...
    @overload
    def classes(self, kind: Literal["policy"]) -> dict[str, type[PolicyEngine]]: ...
    @overload
    def classes(self, kind: Literal["drivers"]) -> dict[str, type[ComputeDriver]]: ...
    @overload
    def classes(self, kind: str) -> dict[str, type[Any]]: ...
    def classes(self, kind: str) -> dict[str, type[Any]]:
        """Return ``{name: class}`` of every class registered for ``kind``, sorted by name.

        :raises ValueError: for an unknown kind.
        """
        if kind not in self._classes:
            raise ValueError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KINDS)}")
        return dict(sorted(self._classes[kind].items()))

    @overload
    def get_class(self, kind: Literal["agents"], name: str) -> type[Agent]: ...
    @overload
    def get_class(self, kind: Literal["inference"], name: str) -> type[InferenceBackend]: ...
    @overload
    def get_class(self, kind: Literal["isolation"], name: str) -> type[IsolationLayer]: ...
    @overload
    def get_class(self, kind: Literal["policy"], name: str) -> type[PolicyEngine]: ...
    @overload
    def get_class(self, kind: Literal["drivers"], name: str) -> type[ComputeDriver]: ...
    @overload
    def get_class(self, kind: str, name: str) -> type[Any]: ...
    def get_class(self, kind: str, name: str) -> type[Any]:
        """Return the class registered as ``name`` for ``kind``.

        :raises PluginNotFound: naming the installed alternatives and how to install it,
            or why an installed plugin is unusable (failed or disabled).
        """
        cls = self.classes(kind).get(name)
        if cls is not None:
            return cls
        raise PluginNotFound(self._why_missing(kind, name))

    @overload
    def require(self, kind: Literal["agents"], name: str) -> type[Agent]: ...
    @overload
    def require(self, kind: Literal["inference"], name: str) -> type[InferenceBackend]: ...
    @overload
    def require(self, kind: Literal["isolation"], name: str) -> type[IsolationLayer]: ...
    @overload
    def require(self, kind: Literal["policy"], name: str) -> type[PolicyEngine]: ...
    @overload
    def require(self, kind: Literal["drivers"], name: str) -> type[ComputeDriver]: ...
    @overload
    def require(self, kind: str, name: str) -> type[Any]: ...
    def require(self, kind: str, name: str) -> type[Any]:
        """Like :meth:`get_class`, for what a sandbox cannot run without (fail closed).

        :raises PluginLoadError: the plugin is installed but failed, is disabled, or
            registered no class by that name — the message names the error.
        :raises PluginNotFound: it is not installed.
        """
        try:
            return self.get_class(kind, name)
        except PluginNotFound as exc:
            if self.info(kind, name) is not None:
                raise PluginLoadError(f"{exc}; the sandbox cannot start without it") from None
            raise

    def _why_missing(self, kind: str, name: str) -> str:
        noun = KINDS[kind].noun if kind in KINDS else kind
        info = self.info(kind, name)
        if info is not None and info.status == FAILED:
            return f"{noun} {name!r} ({info.distribution}) failed to load: {info.error}"
        if info is not None and info.status == DISABLED:
            return f"{noun} {name!r} is disabled by {ENV_DISABLE}"
        if info is not None:
            return f"{noun} {name!r} ({info.distribution}) is installed but registers no class named {name!r}"
        installed = ", ".join(self.classes(kind)) or "none"
        return f"{noun} {name!r} is not installed (installed: {installed}); {install_hint(name)}"


# --------------------------------------------------------------------------- process-wide


_registry: Registry | None = None
_lock = threading.Lock()


def _nothing(_names: Any) -> None:
    """stevedore's callback for names it could not load: each is reported by :meth:`Registry.load`."""


def get_registry() -> Registry:
    """Return the process-wide registry, loading every plugin on first use.

    :raises PluginLoadError: in strict mode when a plugin fails (nothing is cached then).
    """
    global _registry
    with _lock:
        if _registry is None:
            _registry = Registry.load()
        return _registry


def loaded_registry() -> Registry | None:
    """Return the process-wide registry if :func:`get_registry` has loaded it, else None.

    Never loads anything: for processes (the supervisor) that :func:`select` the
    few plugins they need unless something else already loaded every plugin.
    """
    with _lock:
        return _registry


def reset_registry() -> None:
    """Forget the process-wide registry; the next :func:`get_registry` reloads (tests)."""
    global _registry
    with _lock:
        _registry = None


@overload
def select(kind: Literal["agents"], name: str, *, groups: Mapping[str, str] = ...) -> type[Agent]: ...
@overload
def select(kind: Literal["inference"], name: str, *, groups: Mapping[str, str] = ...) -> type[InferenceBackend]: ...
@overload
def select(kind: Literal["isolation"], name: str, *, groups: Mapping[str, str] = ...) -> type[IsolationLayer]: ...
@overload
def select(kind: Literal["policy"], name: str, *, groups: Mapping[str, str] = ...) -> type[PolicyEngine]: ...
@overload
def select(kind: Literal["drivers"], name: str, *, groups: Mapping[str, str] = ...) -> type[ComputeDriver]: ...
@overload
def select(kind: str, name: str, *, groups: Mapping[str, str] = ...) -> type[Any]: ...
def select(kind: str, name: str, *, groups: Mapping[str, str] = GROUPS) -> type[Any]:
    """Load only the plugin ``name`` of ``kind`` and return its class (fail closed).

    For processes that need exactly one implementation (the supervisor's policy
    engine, the gateway's compute driver) and should not import every agent
    plugin. Uses stevedore's ``DriverManager``, or :func:`select_module` for an
    entry point given to :func:`use_resolved_entry_points`.

    :raises PluginNotFound: no entry point ``name`` in the kind's group.
    :raises PluginLoadError: it is disabled, fails to import, fails validation or
        registers no class named ``name``.
    """
    target = _resolved.get(f"{kind}:{name}") if groups is GROUPS else None
    if target:
        return select_module(kind, name, target)
    noun = KINDS[kind].noun if kind in KINDS else kind
    if name in disabled_plugins() or f"{kind}:{name}" in disabled_plugins():
        raise PluginLoadError(f"{noun} {name!r} is disabled by {ENV_DISABLE}")
    from openshell.plugin import _managers

    _managers.forget_stevedore_cache([groups[kind]])
    failure: list[BaseException] = []

    def on_failure(_mgr: Any, _ep: Any, exc: BaseException) -> None:
        failure.append(exc.exc if isinstance(exc, _managers.LoadFailure) else exc)

    try:
        with _stdout_to_stderr():
            mgr = _managers.Driver(groups[kind], name, invoke_on_load=False, on_load_failure_callback=on_failure)
    except (_managers.NoMatches, _managers.MultipleMatches):
        if failure:
            raise PluginLoadError(f"{noun} {name!r} failed to load: {first_line(failure[0])}") from None
        installed = ", ".join(i.name for i in list_entry_points(kind, groups=groups)) or "none"
        raise PluginNotFound(f"{noun} {name!r} is not installed (installed: {installed}); {install_hint(name)}") from None
    return _named_class(kind, name, mgr.driver, "is installed but")


#: "kind:name" -> entry point value resolved by another process (use_resolved_entry_points)
_resolved: dict[str, str] = {}


def supervisor_entry_points() -> dict[str, str]:
    """``"kind:name"`` -> entry point value of the installed policy and isolation plugins:
    what a compute driver writes into a supervisor's config (``SupervisorConfig.plugins``)
    so the supervisor imports those modules directly (:func:`use_resolved_entry_points`).
    Valid only where the supervisor runs the same packages as this process.

    A name two distributions claim is left out: the supervisor's own lookup refuses it.
    """
    found = [(i.key, i.module) for kind in ("policy", "isolation") for i in list_entry_points(kind)]
    keys = [key for key, _ in found]
    return {k: v for k, v in found if keys.count(k) == 1}


def use_resolved_entry_points(entry_points: Mapping[str, str]) -> None:
    """Let :func:`select` import these plugins directly instead of scanning every
    installed distribution for them (stevedore: ~40 ms per call in a container).

    The sandbox supervisor calls it with what its compute driver resolved in the
    gateway (``SupervisorConfig.plugins``); validation is unchanged.

    :param entry_points: ``"kind:name"`` -> entry point value (``"module"`` or
        ``"module:attribute"``); replaces any earlier map.
    :raises ValueError: a key that is not ``kind:name`` or an empty value.
    """
    for key, value in entry_points.items():
        kind, sep, name = str(key).partition(":")
        if not sep or not kind or not name or not isinstance(value, str) or not value:
            raise ValueError(f"resolved entry point {key!r}: {value!r} is not 'kind:name' -> 'module[:attribute]'")
    _resolved.clear()
    _resolved.update(entry_points)


def select_module(kind: str, name: str, target: str) -> type[Any]:
    """:func:`select` for a plugin whose entry point value is already known: import
    ``target`` (``"module"`` or ``"module:attribute"``, as in an entry point) and
    validate and register it exactly as :func:`select` does, without scanning the
    installed distributions.

    The sandbox supervisor gets its policy engine this way (the compute driver
    resolved the entry point in the gateway): the scan and stevedore were ~40 ms
    of every container start.

    :raises PluginLoadError: disabled, fails to import, fails validation or
        registers no class named ``name``.
    """
    noun = KINDS[kind].noun if kind in KINDS else kind
    if name in disabled_plugins() or f"{kind}:{name}" in disabled_plugins():
        raise PluginLoadError(f"{noun} {name!r} is disabled by {ENV_DISABLE}")
    module_name, _, attr = target.partition(":")
    try:
        with _stdout_to_stderr():
            obj: Any = importlib.import_module(module_name)
            for part in filter(None, attr.split(".")):
                obj = getattr(obj, part)
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit/AssertionError of a plugin's import too
        raise PluginLoadError(f"{noun} {name!r} failed to load from {target!r}: {first_line(exc)}") from None
    return _named_class(kind, name, obj, f"({target})")


def _named_class(kind: str, name: str, module: Any, where: str) -> type[Any]:
    """Register ``module`` as plugin ``kind:name``, validate it and return its class named
    ``name`` (what :func:`select` and :func:`select_module` share).

    :raises PluginLoadError: validation fails or no class is named ``name``.
    """
    noun = KINDS[kind].noun if kind in KINDS else kind
    key = f"{kind}:{name}"
    pm = new_plugin_manager()
    error = register_module(pm, module, key)
    classes: list[type[_Named]] = []
    if not error:
        classes, error = collect_classes(pm, key, kind)
    if error:
        raise PluginLoadError(f"{noun} {name!r} failed to load: {error}")
    for cls in classes:
        if cls.name == name:
            return cls
    raise PluginLoadError(f"{noun} {name!r} {where} registers no class named {name!r}")


__all__ = [
    "GROUPS",
    "KINDS",
    "PluginError",
    "PluginInfo",
    "PluginLoadError",
    "PluginNotFound",
    "Registry",
    "collect_classes",
    "disabled_plugins",
    "first_line",
    "get_registry",
    "list_entry_points",
    "loaded_registry",
    "new_plugin_manager",
    "register_module",
    "registration_arguments",
    "reset_registry",
    "select",
    "select_module",
    "strict_mode",
    "use_resolved_entry_points",
]
