"""Abstract base classes for every plugin kind, and the table of kinds (DESIGN.md §3).

A plugin registers *classes* (not instances) through its registration hook, so
listing never instantiates anything. Each class carries ``name`` (its public
name, equal to its entry-point name) and ``summary`` (one line for listings).
:data:`KINDS` has one :class:`Kind` record per kind (entry-point group, hook,
ABC, …); the loader, the contracts and the CLI read it, nothing else lists kinds.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Mapping, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from openshell.policy.decision import ConnectInput, Decision, RequestInput
    from openshell.policy.model import Policy


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of a plugin's ``probe()``.

    :ivar ok: the feature is usable here.
    :ivar detail: one human line, e.g. ``"Landlock ABI 7"`` or the reason it is not.
    """

    ok: bool
    detail: str


class _Named(abc.ABC):
    name: ClassVar[str]
    summary: ClassVar[str] = ""


# --------------------------------------------------------------------------- agents


class Agent(_Named):
    """An agent program (Claude Code, Codex, …) that runs inside a sandbox.

    Subclasses describe the agent; they never start it themselves — the
    supervisor's child launcher does, so the agent gets the sandbox's isolation.
    """

    #: package that installs the program, e.g. ``"npm:@anthropic-ai/claude-code"``
    package: ClassVar[str] = ""
    #: provider types whose credentials the agent needs, e.g. ``("anthropic",)``
    provider_types: ClassVar[tuple[str, ...]] = ()
    #: wire protocols the agent speaks to ``inference.local`` (``"openai"``, ``"anthropic"``);
    #: the CLI warns when the inference route speaks none of them. () = not declared
    inference_protocols: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def argv(self, extra: Sequence[str] = ()) -> list[str]:
        """Return the argv that starts the agent, with ``extra`` arguments appended."""

    def policy_fragment(self) -> dict[str, Any]:
        """Return the ``network_policies`` entries the agent needs (its own API hosts)."""
        return {}

    def inference_env(self, base_url: str) -> dict[str, str]:
        """Return environment variables that point the agent at ``base_url`` (inference.local)."""
        return {}

    def home_files(self, base_url: str | None) -> dict[str, str]:
        """Return files to write into the sandbox user's home (``/sandbox``) before the agent starts.

        Used for agents that read their endpoint from a config file rather than
        the environment (Codex's ``.codex/config.toml``). The CLI writes them
        inside the sandbox, as the sandbox user, through the child launcher.

        :param base_url: the inference origin (``https://inference.local``) when an
            inference route is set, else ``None``.
        :returns: ``{relative path under HOME: UTF-8 text}``; paths are relative,
            without ``..`` segments. Never put secrets here (use providers).
        """
        return {}

    def detect(self) -> bool:
        """Return True when the agent program is installed where sandboxes run."""
        return False


# --------------------------------------------------------------------------- inference


class InferenceBackend(_Named):
    """A model API that ``inference.local`` can route to."""

    #: wire protocols spoken, subset of ``{"openai", "anthropic"}``
    protocols: ClassVar[tuple[str, ...]] = ("openai",)
    default_base_url: ClassVar[str] = ""

    def auth_headers(self, credential: str | None) -> dict[str, str]:
        """Return headers that authenticate a request with ``credential`` (may be empty)."""
        return {"Authorization": f"Bearer {credential}"} if credential else {}

    def list_models(self, base_url: str, credential: str | None) -> list[str]:
        """Return model ids the backend serves; raises ``OSError`` when unreachable."""
        return []

    def probe(self, base_url: str, credential: str | None) -> ProbeResult:
        """Check that the backend answers at ``base_url``."""
        return ProbeResult(False, "probe not implemented")


# --------------------------------------------------------------------------- isolation


@dataclass
class IsolationContext:
    """What an isolation layer knows about the sandbox it isolates.

    The same object (serialised as JSON) reaches ``prepare`` in the supervisor
    and ``apply_in_child`` in the child launcher, so every field is plain data.

    :ivar sandbox_id: the sandbox's id.
    :ivar policy: the policy document as a normalised dict (``Policy.to_dict()``).
    :ivar state_dir: supervisor-owned directory for this sandbox (root only).
    :ivar netns: name of the sandbox network namespace (``/run/netns/<netns>``).
    :ivar uid: numeric uid the child runs as; ``gid`` likewise.
    :ivar extra: per-layer data a layer's ``prepare`` leaves for its ``apply_in_child``,
        keyed by layer name.
    """

    sandbox_id: str
    policy: dict[str, Any]
    state_dir: str = ""
    netns: str = ""
    uid: int = -1
    gid: int = -1
    extra: dict[str, Any] = field(default_factory=dict)


class IsolationLayer(_Named):
    """One isolation mechanism (network namespace, Landlock, seccomp).

    The child launcher applies, in this order: network namespace → mount
    namespace → drop to the sandbox user → Landlock → seccomp → exec. ``order``
    places a layer in that sequence: layers with ``order < USER_DROP_ORDER``
    run as root before the drop, the others after it.
    """

    #: position in the launch sequence; see the module constants below
    order: ClassVar[int] = 100
    #: True when the policy always needs the layer (a sandbox without it is not a sandbox)
    required: ClassVar[bool] = True

    @abc.abstractmethod
    def probe(self) -> ProbeResult:
        """Report kernel support (no side effects)."""

    def prepare(self, ctx: IsolationContext) -> None:
        """Build host-side state as root in the supervisor, before any child starts.

        Raises ``IsolationError`` when the layer cannot be set up as the policy needs.
        """

    def prepare_in_child(self, ctx: IsolationContext) -> None:
        """Do the root-only part of the layer in the child launcher, before the privilege drop.

        For layers with ``order > USER_DROP_ORDER`` that need root for a step
        (e.g. opening the Landlock paths) while enforcement must follow the drop.
        Runs after the mount namespace is set up. Raises ``IsolationError``.
        """

    @abc.abstractmethod
    def apply_in_child(self, ctx: IsolationContext) -> None:
        """Apply the layer in the child launcher, after fork and before exec.

        Raises ``IsolationError`` when the layer cannot be applied as the policy needs;
        the launcher then refuses to exec.
        """

    def teardown(self, ctx: IsolationContext) -> None:
        """Remove what ``prepare`` built; must succeed when called twice."""


NETNS_ORDER = 10
MOUNT_NS_ORDER = 20  # applied by the launcher itself
USER_DROP_ORDER = 30  # applied by the launcher itself
LANDLOCK_ORDER = 40
SECCOMP_ORDER = 50


class IsolationError(RuntimeError):
    """An isolation layer could not be set up or applied; the sandbox must not start."""


# --------------------------------------------------------------------------- policy engines


class CompiledPolicy:
    """An engine's prepared form of one policy revision.

    :ivar policy: the validated policy it was compiled from.
    :ivar version: the revision number the gateway gave it (0 when offline).
    """

    def __init__(self, policy: "Policy", version: int = 0) -> None:
        self.policy = policy
        self.version = version


class PolicyEngine(_Named):
    """Decides connections (L4) and, for inspected endpoints, HTTP requests (L7).

    Destination safety (POLICY.md §2.5) is not the engine's job: the caller runs
    ``openshell.policy.decide`` which applies it after the engine allows.
    """

    @abc.abstractmethod
    def load(self, policy: "Policy", version: int = 0) -> CompiledPolicy:
        """Compile ``policy``; raises ``openshell.policy.PolicyError`` if it cannot be used."""

    def prepare(self, policy: "Policy") -> None:  # noqa: B027 - optional hook, empty by default
        """Optionally do ahead, in this process, work a later :meth:`load` of ``policy`` can reuse.

        Called by a parent that forks supervisors, before any fork, so what it
        builds is shared by every child. Must not change what ``load`` returns.
        The default does nothing.
        """

    @abc.abstractmethod
    def decide_connect(self, compiled: CompiledPolicy, inp: "ConnectInput") -> "Decision":
        """Decide one connection (POLICY.md §2.1–2.4). Must not raise: errors deny."""

    def decide_request(self, compiled: CompiledPolicy, inp: "RequestInput") -> "Decision":
        """Decide one HTTP request on an inspected endpoint (POLICY.md §3)."""
        from openshell.policy.decision import Decision

        return Decision.deny("HTTP inspection is not supported by this engine", engine=self.name)


# --------------------------------------------------------------------------- compute drivers


#: every phase a :class:`SandboxStatus` may report
SANDBOX_PHASES: tuple[str, ...] = ("PROVISIONING", "READY", "ERROR", "STOPPED", "DELETING")


@dataclass(frozen=True)
class SandboxStatus:
    """What a compute driver reports about one sandbox.

    :ivar phase: one of :data:`SANDBOX_PHASES`: ``PROVISIONING``, ``READY``,
        ``ERROR``, ``STOPPED``, ``DELETING``.
    :ivar reason: why, for ERROR/STOPPED (empty otherwise).
    """

    phase: str
    reason: str = ""


@dataclass(frozen=True)
class SshEndpoint:
    """Where the gateway reaches a sandbox's SSH server.

    Exactly one of ``unix_path`` or (``host``, ``port``) is set.
    """

    unix_path: str = ""
    host: str = ""
    port: int = 0


class DriverUnsupported(NotImplementedError):
    """The compute driver does not implement this operation (e.g. stop/start);
    the gateway answers FAILED_PRECONDITION with this message."""


@dataclass(frozen=True)
class DriverContext:
    """What the gateway gives a compute driver when it constructs it: ``cls(ctx)``.

    :ivar state_dir: the gateway's state directory; the driver keeps its files
        under ``state_dir/sandboxes/<id>/``.
    :ivar gateway_endpoint: URL supervisors dial, e.g. ``https://127.0.0.1:8080``.
    :ivar ca_cert, client_cert, client_key: PEM file paths supervisors use for mTLS.
    """

    state_dir: str
    gateway_endpoint: str
    ca_cert: str = ""
    client_cert: str = ""
    client_key: str = ""


class ComputeDriver(_Named):
    """Starts and stops one supervisor per sandbox. Constructed as ``cls(DriverContext)``."""

    #: True when the driver runs sandboxes from images (``spec["image"]`` of the
    #: record ``create`` gets; empty: the driver's default image). The gateway
    #: refuses a sandbox naming an image on a driver without them.
    supports_images: ClassVar[bool] = False
    #: set by the gateway once it listens: ``(sandbox_id, type, reason, message, metadata)``
    #: (see :meth:`report_event`); None until then
    event_sink: Optional[Callable[[str, str, str, str, Mapping[str, str]], None]] = None

    def __init__(self, ctx: DriverContext) -> None:
        self.ctx = ctx

    def report_event(self, sandbox_id: str, reason: str, message: str, *, warning: bool = False, **metadata: str) -> None:
        """Tell the sandbox's watchers something happened to it (a platform event
        with source ``driver``), e.g. ``report_event(sid, "ImagePulled", "pulled alpine:3.20")``.

        :param reason: CamelCase, e.g. ``ImagePulled``, ``SupervisorStarted``.
        :param warning: type ``Warning`` instead of ``Normal``.
        Callable from any thread; never raises; dropped while no gateway listens.
        """
        sink = self.event_sink
        if sink is None:
            return
        try:
            sink(sandbox_id, "Warning" if warning else "Normal", reason, message, {k: str(v) for k, v in metadata.items()})
        except Exception:  # noqa: BLE001 - an event must never fail a driver operation
            pass

    @abc.abstractmethod
    def create(self, sandbox: Mapping[str, Any]) -> None:
        """Start the supervisor for ``sandbox`` (a record with id, name, spec); non-blocking."""

    @abc.abstractmethod
    def delete(self, sandbox_id: str, keep_workdir: bool = False) -> None:
        """Stop the supervisor and remove every trace of the sandbox.

        Idempotent: deleting an id the driver never saw, or deleting twice,
        returns without raising.
        """

    @abc.abstractmethod
    def status(self, sandbox_id: str) -> SandboxStatus:
        """Return the sandbox's current status as the driver sees it.

        Never raises for an unknown id: report a phase from :data:`SANDBOX_PHASES`
        (``ERROR`` or ``STOPPED`` with a reason) instead.
        """

    def watch(self) -> Iterator[tuple[str, SandboxStatus]]:
        """Yield ``(sandbox_id, status)`` changes; the default yields nothing."""
        return iter(())

    def stop(self, sandbox_id: str) -> None:
        """End every process of the sandbox and keep its files (workdir, config),
        so :meth:`start` can run it again. Blocking: on return nothing of the
        sandbox runs and ``status`` reports ``STOPPED``. Stopping a stopped
        sandbox returns without raising.

        :raises DriverUnsupported: the default: this driver cannot stop sandboxes.
        """
        raise DriverUnsupported(f"compute driver '{self.name}' cannot stop sandboxes; delete and recreate it instead")

    def start(self, sandbox: Mapping[str, Any]) -> None:
        """Run a sandbox :meth:`stop` stopped again, with the same files.

        :param sandbox: the same record as :meth:`create` gets (its current state).
            Non-blocking like :meth:`create`: the supervisor reports READY itself.
        :raises DriverUnsupported: the default: this driver cannot start stopped sandboxes.
        """
        raise DriverUnsupported(f"compute driver '{self.name}' cannot start stopped sandboxes; delete and recreate it instead")

    @abc.abstractmethod
    def ssh_endpoint(self, sandbox_id: str) -> SshEndpoint:
        """Return how the gateway reaches the sandbox's SSH server."""


# --------------------------------------------------------------------------- the table of kinds


@dataclass(frozen=True)
class Kind:
    """One plugin kind: where its plugins are declared and what they register.

    :ivar name: the kind's name in listings, ``OPENSHELL_DISABLE_PLUGINS`` and
        ``Registry.classes(name)``, e.g. ``"agents"``.
    :ivar group: the entry-point group plugins of the kind declare, e.g. ``"openshell.agents"``.
    :ivar hook: the registration hookspec, e.g. ``"register_agents"``.
    :ivar base: the ABC every registered class must subclass.
    :ivar noun: how messages name one plugin of the kind, e.g. ``"agent"``.
    :ivar fail_closed: a sandbox must not start when the plugin it needs is
        missing or failed (isolation, policy, drivers).
    """

    name: str
    group: str
    hook: str
    base: type[_Named]
    noun: str
    fail_closed: bool = False


#: every plugin kind, in listing order, by name
KINDS: Mapping[str, Kind] = MappingProxyType(
    {
        k.name: k
        for k in (
            Kind("agents", "openshell.agents", "register_agents", Agent, "agent"),
            Kind("inference", "openshell.inference", "register_inference_backends", InferenceBackend, "inference backend"),
            Kind("isolation", "openshell.isolation", "register_isolation_layers", IsolationLayer, "isolation layer", fail_closed=True),
            Kind("policy", "openshell.policy", "register_policy_engines", PolicyEngine, "policy engine", fail_closed=True),
            Kind("drivers", "openshell.drivers", "register_compute_drivers", ComputeDriver, "compute driver", fail_closed=True),
        )
    }
)
