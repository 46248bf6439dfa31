"""``openshell-sandbox``: the per-sandbox supervisor (DESIGN.md §4).

Start order: fetch config and policy from the gateway → prepare isolation
(network namespaces, veth) → per-sandbox files (workdir, tmp, hosts, CA) →
proxy on the supervisor side, port 3128 → SSH server → entrypoint through the
child launcher → report READY → loops (policy reload, child reaping) until
SIGTERM, then tear everything down. Any failure before READY is reported as
ERROR with the reason, and nothing is left behind (fail closed).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from openshell.plugin.kinds import IsolationContext
from openshell.supervisor.cleanup import CONTEXT_FILE, kill_sandbox_processes
from openshell.supervisor.layers import REQUIRED_LAYERS
from openshell.supervisor.link import GatewayLink, SupervisorConfig
from openshell.supervisor.log_push import PushHandler, flush, push_loop
from openshell.supervisor.ssh_server import SessionRequest, SshServer

if TYPE_CHECKING:  # pragma: no cover - imported at run time inside the methods (see below)
    from openshell.plugin.kinds import PolicyEngine
    from openshell.policy.model import Policy
    from openshell.resources import Limits
    from openshell.supervisor.cgroups import Cgroup
    from openshell.supervisor.credentials import CredentialHook
    from openshell.supervisor.deferred import DeferredRouter
    from openshell.supervisor.mounts import SandboxDirs
    from openshell.supervisor.policy_reload import PolicyReloader
    from openshell.supervisor.proxy.attribution import ConnectAttributor
    from openshell.supervisor.proxy.server import ProxyServer
    from openshell.supervisor.sandbox_ns import SandboxNamespaces

log = logging.getLogger("openshell.supervisor")

# The modules a start needs after the first gateway round trip (policy, launcher,
# proxy, inference router, CA) are imported inside Supervisor's methods on purpose:
# _preload imports them in a worker thread while GetSandboxConfig is in flight,
# and a module-level import here would put that ~0.1 s back on create-to-READY.

# Seconds between housekeeping rounds (limit check, entrypoint exit, state directory
# still there): the first while the sandbox shows activity, doubling up to the second
# while it is idle. Hundreds of idle supervisors on one machine each woke every
# second for it, ~0.5 ms of CPU per wake-up with cold caches.
CHECK_INTERVAL = 1.0
IDLE_CHECK_INTERVAL = 5.0
WORKDIR_TEMPLATES = ".workdir-templates"  # beside the sandboxes' state directories: empty workdir file systems to copy


def _cause(full_reason: str) -> str:
    """``inodes`` or ``space``: the log field of a :func:`mounts.full_reason`."""
    return "inodes" if "out of inodes" in full_reason else "space"


def _preload() -> type[PolicyEngine]:
    """Import what the start needs after the first gateway round trip and return the
    ``opa`` policy engine class (the only policy plugin loaded).

    Run in a worker thread while ``GetSandboxConfig`` is in flight, so ~0.1 s of
    imports (the policy model, the engine, the proxy) overlaps the wait instead
    of following it (``cryptography`` is not among them: see ``sandbox_ca``).
    Imports only: nothing is started, and a failure surfaces when the start
    awaits the result.

    :raises openshell.plugin.loader.PluginError: the engine is missing or broken.
    """
    _import_start_modules()
    from openshell.plugin.loader import select

    return select("policy", "opa")


_imports_lock = threading.Lock()


def _import_start_modules() -> None:
    # One thread at a time: the early preload of _load_config and the start's own
    # would otherwise import the same packages side by side, and Python breaks the
    # resulting import-lock deadlock (the proxy package imports its server, which
    # imports the package) by handing one thread a half-initialised module.
    with _imports_lock:
        # Not the HTTP inspector nor the inference router: built on first use (``deferred``).
        import openshell.policy.parse  # noqa: F401
        import openshell.supervisor.deferred  # noqa: F401
        import openshell.supervisor.launcher  # noqa: F401
        import openshell.supervisor.policy_reload  # noqa: F401
        import openshell.supervisor.proxy.identity  # noqa: F401
        import openshell.supervisor.proxy.server  # noqa: F401
        import openshell.supervisor.sandbox_env  # noqa: F401
        import openshell.supervisor.sandbox_ns  # noqa: F401


def _json_document(text: str) -> dict:
    """The policy's JSON form as a mapping; a duplicate key or a non-object is refused.

    :raises ValueError: not one JSON object with unique keys.
    """

    def unique(pairs: list[tuple[str, object]]) -> dict:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise ValueError("policy JSON has a duplicate key")
        return out

    doc = json.loads(text, object_pairs_hook=unique)
    if not isinstance(doc, dict):
        raise ValueError("policy JSON is not an object")
    return doc


def parse_hosts(entries: list[str]) -> dict[str, list[str]]:
    """Turn ``name:ip`` entries into a name → addresses map (names lower-cased).

    :raises ValueError: for an entry without ``:`` or with an invalid address.
    """
    hosts: dict[str, list[str]] = {}
    for entry in entries:
        name, sep, ip = entry.partition(":")
        if not sep or not name:
            raise ValueError(f"extra host {entry!r} is not NAME:IP")
        ipaddress.ip_address(ip)
        hosts.setdefault(name.lower().rstrip("."), []).append(ip)
    return hosts


def _writable_net_sysctls() -> None:
    """In a container ``/proc/sys`` is read-only; the network namespaces this supervisor
    makes need their own ``net.*`` sysctls (per network namespace: a write changes only
    the namespace of the thread that opens the file). Bind ``/proc/sys/net`` over itself
    and make that bind writable; the rest of ``/proc/sys`` stays read-only. Idempotent.

    :raises OSError: the mount was refused (the container lacks CAP_SYS_ADMIN).
    """
    from openshell.supervisor import nsutil

    path = "/proc/sys/net"
    try:
        with open(f"{path}/ipv4/ip_forward", "r+"):
            return  # already writable (a restart of this container, or no container)
    except OSError:
        pass
    nsutil.mount(path, path, "", nsutil.MS_BIND, None)
    nsutil.mount(path, path, "", nsutil.MS_BIND | nsutil.MS_REMOUNT | nsutil.MS_NOSUID | nsutil.MS_NODEV | 8, None)  # 8: MS_NOEXEC


class Supervisor:
    """One sandbox's runtime. ``await run()`` returns when the sandbox stops."""

    def __init__(self, cfg: SupervisorConfig) -> None:
        self.cfg = cfg
        self.state_dir = Path(cfg.state_dir)
        self.link = GatewayLink(cfg)
        self.ctx: Optional[IsolationContext] = None
        self.layers_prepared = False
        self.proxy: Optional[ProxyServer] = None
        self.attributor: Optional[ConnectAttributor] = None
        self.ssh: Optional[SshServer] = None
        self.entrypoint: Optional[subprocess.Popen] = None
        self.stop = asyncio.Event()
        self.log_handler: Optional[PushHandler] = None
        self.policy_revision = 0
        self.engine: Optional[PolicyEngine] = None
        self.policy: Optional[Policy] = None  # the Policy in force (revision policy_revision)
        self.reloader: Optional[PolicyReloader] = None
        self.spec_env: dict[str, str] = {}
        #: placeholders of the attached providers (replaced whole when one is attached or detached)
        self.provider_env: dict[str, str] = {}
        #: PATH entries before the system ones (the sandbox ``python``), see _sandbox_python_mounts
        self.extra_path: tuple[str, ...] = ()
        self.mounts: list = []
        self.router: Optional[DeferredRouter] = None  # inference.local
        self.credential_hook: Optional[CredentialHook] = None  # provider placeholder substitution
        self._inference_task: Optional[asyncio.Task] = None
        self.namespaces: Optional[SandboxNamespaces] = None  # the sandbox's PID/IPC/UTS/cgroup namespaces
        self.cgroup: Optional[Cgroup] = None  # the resource limits
        #: whose counters show a limit the sandbox hit: ``cgroup``, or in a container
        #: (docker driver) the container's own cgroup, which the supervisor only reads
        self.counters: Optional[Cgroup] = None
        self.limits: Optional[Limits] = None
        self._limit_events = (0, 0)  # OOM kills, refused forks already reported
        self._tmp_full = False
        self._workdir_full = False
        #: the last check's messages about new OOM kills / refused forks (kept in the status
        #: until newer ones replace them; a full /tmp or workdir is shown only while it lasts)
        self._limit_notice = ""
        #: the reason the gateway last took with READY (the start's report carries none)
        self._status_reason = ""
        self.tmp_dir: Optional[str] = None  # host path of the sandbox's /tmp tmpfs
        self.workdir: Optional[str] = None  # host path of the sandbox's workdir mount
        #: set (from any thread, via the loop) when a session starts: check soon again
        self._activity = asyncio.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    # ------------------------------------------------------------------ start
    async def run(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop_on, sig)
        self.log_handler = PushHandler()
        logging.getLogger("openshell").addHandler(self.log_handler)
        try:
            await self._start()
        except Exception as exc:  # noqa: BLE001 - any start failure: ERROR, fail closed
            log.exception("event=start_failed")
            await self.link.report(phase="ERROR", reason=f"sandbox failed to start: {exc}", pid=os.getpid())
            await self._shutdown()
            return 1
        finally:
            collector_on()
        await self.link.report(phase="READY", policy_revision=self.policy_revision, pid=os.getpid())
        cpu = os.times()
        # Wall and CPU time of the start: what a driver's create-to-READY spends in here.
        log.info("event=ready sandbox=%s since_exec_ms=%d cpu_ms=%d", self.cfg.sandbox_id, _ms_since_exec(), (cpu.user + cpu.system) * 1000)
        tasks = [asyncio.ensure_future(self._policy_loop()), asyncio.ensure_future(self._housekeeping())]
        if self.log_handler is not None:
            tasks.append(asyncio.ensure_future(push_loop(self.link, self.log_handler)))
        await self.stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=1.0)  # a batch in flight goes back to the queue
        await self._shutdown()
        return 0

    def _stop_on(self, sig: signal.Signals) -> None:
        """SIGTERM/SIGINT: stop. Logged, so a sandbox whose supervisor was told to stop by
        a signal nobody sent through the gateway says so (its ERROR reason quotes this line)."""
        if not self.stop.is_set():
            log.info("event=stopping signal=%s sandbox=%s", sig.name, self.cfg.sandbox_id)
        self.stop.set()

    async def _start(self) -> None:
        from openshell.plugin.loader import use_resolved_entry_points

        # The plugins' modules as the driver found them: no entry-point scan per plugin.
        use_resolved_entry_points(self.cfg.plugins)
        from openshell.supervisor.provider_link import fetch_provider_environment

        preload = asyncio.ensure_future(asyncio.to_thread(_preload))
        # The provider environment does not depend on the config: both round trips
        # are in flight while the imports run.
        provider_env = asyncio.ensure_future(fetch_provider_environment(self.link))
        provider_env.add_done_callback(lambda f: f.cancelled() or f.exception())  # awaited below unless the start fails first
        try:
            conf = await self.link.get_config()
            self.name = conf.name or self.cfg.name
            if self.cfg.container:
                _writable_net_sysctls()
            self._start_limits()
            # The sandbox's init is a second interpreter (tens of ms on the other CPU):
            # started now, it comes up while the imports above finish.
            self._make_namespaces()
        except BaseException:
            preload.add_done_callback(lambda f: f.cancelled() or f.exception())  # reported: the start's error
            raise
        engine_class = await preload
        from openshell.policy import parse_policy
        from openshell.supervisor import launcher
        from openshell.supervisor.credentials import CredentialHook, credentials_from_proto
        from openshell.supervisor.sandbox_ca import SandboxCA
        from openshell.supervisor.users import ids_for_policy

        assert self.limits is not None  # set by _start_limits
        # The JSON form when the gateway sent one (no YAML parser to import); the same validation.
        policy = parse_policy(_json_document(conf.policy.policy_json) if conf.policy.policy_json else conf.policy.policy_yaml)
        self.spec_env = dict(conf.environment)
        hosts = parse_hosts(list(conf.extra_hosts))
        self.policy = policy
        self.policy_revision = conf.policy.revision
        self.ctx = IsolationContext(
            sandbox_id=self.cfg.sandbox_id,
            policy=policy.to_dict(),
            state_dir=str(self.state_dir),
            extra={"netns": {"index": int(conf.netns_index or self.cfg.netns_index)}},
        )
        # The isolation layers (network namespaces: the slowest step) are prepared in
        # a thread while the steps that do not need them run here: the provider
        # round trip, the policy engine, the sandbox directories and the CA. Every
        # layer is still prepared before READY, and a failure on either side stops
        # the start (the layers are torn down by _shutdown once prepared).
        prepared = asyncio.ensure_future(asyncio.to_thread(launcher.prepare_layers, self.ctx, list(REQUIRED_LAYERS)))
        made_dirs: Optional[asyncio.Future] = None
        try:
            uid, gid = ids_for_policy(self.ctx.policy)
            # The sandbox's file systems (mkfs + loop mount of the workdir: tens of
            # ms of subprocesses) are made in a thread during the provider round trip.
            made_dirs = asyncio.ensure_future(
                asyncio.to_thread(
                    self._make_dirs,
                    uid,
                    gid,
                    {name: ips[0] for name, ips in hosts.items()},
                )
            )
            # Only the policy engine is loaded, not every plugin kind. Its first
            # compilation (~10 ms) overlaps the provider round trip; the supervisor-side
            # checks below still run before the proxy takes a connection.
            self.engine = engine_class()
            compiling = asyncio.ensure_future(asyncio.to_thread(self.engine.load, policy, conf.policy.revision))
            compiling.add_done_callback(lambda f: f.cancelled() or f.exception())  # awaited below unless the start fails first
            # Providers: the sandbox sees placeholders, the proxy keeps the values.
            penv = await provider_env
            self.provider_env = dict(penv.environment)
            self.credential_hook = CredentialHook(credentials_from_proto(penv))
            # The gateway's CA for this start; an older gateway sends none: make one here.
            if conf.sandbox_ca_cert_pem and conf.sandbox_ca_key_pem:
                self.ca = SandboxCA(conf.sandbox_ca_cert_pem, conf.sandbox_ca_key_pem)
            else:
                self.ca = SandboxCA.generate(self.name)
            dirs = await made_dirs
            self.tmp_dir = dirs.tmp
            self.workdir = dirs.workdir
            self.ca.write_public_files(Path(dirs.tls))
            assert self.namespaces is not None  # set by _make_namespaces
            await asyncio.to_thread(self.namespaces.wait_ready)
        finally:
            if made_dirs is not None:
                # Also when the start failed: nothing it mounts may outlive the supervisor.
                await asyncio.wait([made_dirs])
                if not made_dirs.cancelled():
                    made_dirs.exception()  # retrieved: raised above, or the start failed before it
            await self._await_layers(prepared)
        self.ctx.uid, self.ctx.gid = uid, gid
        (self.state_dir / CONTEXT_FILE).write_text(json.dumps(_ctx_dict(self.ctx)))

        netns = self.ctx.extra["netns"]
        from openshell.supervisor.policy_reload import PolicyReloader, check_reserved_networks, link_networks

        # The first revision passes the same supervisor-side checks as every reload.
        check_reserved_networks(policy, link_networks(netns))
        compiled = await compiling
        await self._start_proxy(compiled, hosts, netns)
        self.reloader = PolicyReloader(
            self.engine,
            self.proxy,
            policy,
            conf.policy.revision,
            self.link.report,
            reserved=link_networks(netns),
            on_loaded=self._policy_loaded,
        )
        self.ssh = SshServer(self.cfg.ssh_socket, bytes.fromhex(self.cfg.secret), self._launch_session, dial=self._dial_in_sandbox)
        self.ssh.start()
        if conf.command:
            self.entrypoint = self._launch(list(conf.command), {}, None, subprocess.DEVNULL, None, None)
            log.info("event=entrypoint_started pid=%d argv=%s", self.entrypoint.pid, list(conf.command)[:1])

    def _make_dirs(self, uid: int, gid: int, hosts: dict[str, str]) -> SandboxDirs:
        """The sandbox's file systems (:func:`mounts.prepare_sandbox_dirs`: mkfs and loop
        mount of the workdir, tens of ms of subprocesses) and its ``python``; sets
        :attr:`mounts`. Run in a thread during the provider round trip."""
        from openshell.supervisor import mounts

        assert self.limits is not None  # set by _start_limits
        # In a container (docker driver) /sandbox is a directory of the container's own file system.
        disk = None if self.cfg.container else self.limits.disk
        from openshell.supervisor.sandbox_ns import hostname_for

        # Empty workdir file systems are kept beside the sandboxes' state directories
        # and copied (~3 ms) instead of made by mkfs for each start (~17 ms).
        templates = str(self.state_dir.parent / WORKDIR_TEMPLATES)
        dirs = mounts.prepare_sandbox_dirs(
            str(self.state_dir), uid, gid, hosts, tmp_size=self.limits.tmp, disk_size=disk, hostname=hostname_for(self.name), template_dir=templates
        )
        self.mounts = [*dirs.mounts(), *self._sandbox_python_mounts(dirs.hosts)]
        return dirs

    def _sandbox_python_mounts(self, hosts_file: str) -> list:
        """The read-only ``python`` + cloudpickle venv (:mod:`sandbox_python`), built in the
        sandbox's files tmpfs next to its hosts file; none (logged) when the host has
        no usable python3: only ``exec_python`` is affected, so the sandbox still starts."""
        from openshell.supervisor.mounts import Mount
        from openshell.supervisor.sandbox_python import SANDBOX_PYTHON_BIN, SANDBOX_PYTHON_DIR, SandboxPythonUnavailable, prepare_sandbox_python

        try:
            source = prepare_sandbox_python(os.path.join(os.path.dirname(hosts_file), "python"))  # beside the hosts file
            os.makedirs(SANDBOX_PYTHON_DIR, mode=0o755, exist_ok=True)  # the mount point, on the host
        except (SandboxPythonUnavailable, OSError) as exc:
            log.warning("event=sandbox_python_unavailable reason=%s", exc)
            return []
        self.extra_path = (SANDBOX_PYTHON_BIN,)
        return [Mount(str(source), SANDBOX_PYTHON_DIR, read_only=True)]

    def _make_namespaces(self) -> None:
        """The sandbox's own PID, IPC, UTS and cgroup namespaces (``sandbox_ns``).

        Made in the event loop's thread, which lives as long as the supervisor:
        a millisecond of fork, no await. Raises ``SandboxNamespacesError``.
        """
        from openshell.supervisor.sandbox_ns import SandboxNamespaces, hostname_for

        procs = self.cgroup.procs_files() if self.cgroup is not None else []
        # Init starts here and gets ready during the steps below (awaited before READY).
        self.namespaces = SandboxNamespaces.start(hostname_for(self.name), procs)

    def _start_limits(self) -> None:
        """Create the sandbox's cgroup with its limits (before anything runs in it).

        :raises openshell.resources.QuantityError, CgroupError: bad limits or no
            usable cgroup hierarchy; the start fails (fail closed).
        """
        from openshell import resources
        from openshell.supervisor import cgroups

        self.limits = resources.limits_for(self.cfg.resources)
        if self.cfg.container:
            # The container runtime enforces cpu/memory/pids on the whole container;
            # its cgroup's counters still show a limit the sandbox hit.
            log.info("event=limits sandbox=%s enforced_by=container %s", self.cfg.sandbox_id, self.limits.describe())
            try:
                self.counters = cgroups.own()
            except (cgroups.CgroupError, OSError) as exc:
                log.warning("event=limit_counters_unavailable reason=%s", exc)
                return
            ev = self.counters.events()
            self._limit_events = (ev.oom_kills, ev.pids_max)
            return
        cg = cgroups.create(self.cfg.sandbox_id)
        cg.save(str(self.state_dir))  # first: cleanup after a crash finds it
        self.cgroup = self.counters = cg
        cg.set_limits(memory=self.limits.memory, pids=self.limits.pids, cpu_milli=self.limits.cpu_milli)
        ev = cg.events()
        self._limit_events = (ev.oom_kills, ev.pids_max)
        log.info("event=limits sandbox=%s cgroup=v%d %s", self.cfg.sandbox_id, cg.version, self.limits.describe())

    async def _check_limits(self) -> None:
        """Log, and show in the sandbox's status, a limit the sandbox hit: an OOM kill,
        a refused fork, a full /tmp, a full workdir. Each event once.

        The status's reason is the last OOM kills / refused forks seen, then the
        file systems full now: once the sandbox frees the space, the next check
        reports the reason without them (also when nothing else changed).
        """
        from openshell.resources import format_bytes
        from openshell.supervisor import mounts

        if self.limits is None:
            return
        messages = []
        # Inline, not in a worker thread: two small cgroup files and the statfs of
        # our own tmpfs and ext4 are answered from kernel memory (tens of µs), and a
        # thread round trip each second per idle sandbox adds up with hundreds of
        # them on one machine. In a container the workdir may be a network volume,
        # whose statfs can hang: a thread there.
        if self.counters is not None:
            ev = self.counters.events()
            oom, forks = self._limit_events
            if ev.oom_kills > oom:
                limit = "unlimited" if self.limits.memory is None else format_bytes(self.limits.memory)
                messages.append(f"out of memory: {ev.oom_kills - oom} process(es) killed at the memory limit ({limit})")
                log.warning("event=oom_kill sandbox=%s count=%d total=%d memory_limit=%s", self.cfg.sandbox_id, ev.oom_kills - oom, ev.oom_kills, limit)
            if ev.pids_max > forks:
                messages.append(f"process limit reached: {ev.pids_max - forks} fork(s) refused (pids limit {self.limits.pids})")
                log.warning("event=pids_limit sandbox=%s refused=%d pids_limit=%s", self.cfg.sandbox_id, ev.pids_max - forks, self.limits.pids)
            self._limit_events = (ev.oom_kills, ev.pids_max)
        full_now = []  # the file systems full now, in the status until space is freed
        tmp = self.tmp_dir
        if tmp is not None and self.limits.tmp is not None:
            why = mounts.full_reason(tmp, "/tmp", format_bytes(self.limits.tmp))
            if why and not self._tmp_full:
                log.warning("event=tmp_full sandbox=%s tmp_limit=%s cause=%s", self.cfg.sandbox_id, format_bytes(self.limits.tmp), _cause(why))
            elif self._tmp_full and not why:
                log.info("event=tmp_freed sandbox=%s tmp_limit=%s", self.cfg.sandbox_id, format_bytes(self.limits.tmp))
            if why:
                full_now.append(why)
            self._tmp_full = bool(why)
        if self.workdir is not None and self.limits.disk is not None:
            slack = mounts.workdir_slack(self.limits.disk)
            size = format_bytes(self.limits.disk)
            if self.cfg.container:
                why = await asyncio.to_thread(mounts.full_reason, self.workdir, "/sandbox", size, slack=slack)
            else:
                why = mounts.full_reason(self.workdir, "/sandbox", size, slack=slack)
            if why and not self._workdir_full:
                log.warning("event=workdir_full sandbox=%s disk_limit=%s cause=%s", self.cfg.sandbox_id, size, _cause(why))
            elif self._workdir_full and not why:
                log.info("event=workdir_freed sandbox=%s disk_limit=%s", self.cfg.sandbox_id, size)
            if why:
                full_now.append(why)
            self._workdir_full = bool(why)
        if messages:
            self._limit_notice = "; ".join(messages)
        reason = "; ".join([self._limit_notice, *full_now] if self._limit_notice else full_now)
        # Also when only a full file system was freed: the status must stop claiming it.
        # A report the gateway did not take is sent again by the next check.
        if messages or reason != self._status_reason:
            if await self.link.report(phase="READY", reason=reason, pid=os.getpid()):
                self._status_reason = reason

    async def _await_layers(self, prepared: asyncio.Future) -> None:
        """Wait for the ``prepare_layers`` thread — also when the start already failed,
        so nothing it builds outlives the supervisor — and mark the layers for
        teardown by ``_shutdown`` once they are up.

        :raises IsolationError: the preparation failed (it removed what it built).
        """
        await prepared
        self.layers_prepared = True

    async def _start_proxy(self, compiled, hosts, netns: dict) -> None:
        from openshell.supervisor.nsutil import socket_in_netns
        from openshell.supervisor.proxy.attribution import ConnectAttributor
        from openshell.supervisor.proxy.identity import IdentityResolver
        from openshell.supervisor.proxy.server import ProxyServer
        from openshell.supervisor.sandbox_env import PROXY_PORT

        assert self.ctx is not None and self.engine is not None  # set by _start before the proxy
        sock = socket_in_netns(netns["proxy_netns"])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((netns["proxy_ip"], PROXY_PORT))
        sock.listen(512)
        sock.setblocking(False)
        from openshell.supervisor.credentials import credentials_from_proto
        from openshell.supervisor.deferred import DeferredRouter
        from openshell.supervisor.provider_link import ack_provider_environment, fetch_provider_environment, watch_inference

        self.router = router = DeferredRouter(self.cfg.sandbox_id, self.ca)

        async def follow_route() -> None:
            # A new bundle also means an attached provider may have changed, or one was
            # attached or detached: re-read the credentials the proxy substitutes and
            # the placeholders later launches see, then tell the gateway.
            async for bundle in watch_inference(self.link):
                router.set_bundle(bundle)
                try:
                    penv = await fetch_provider_environment(self.link)
                except Exception as exc:  # noqa: BLE001 - keep the credentials in force
                    log.warning("event=provider_refresh_failed reason=%s", exc)
                    continue
                if self.credential_hook is not None:
                    self.credential_hook.update(credentials_from_proto(penv))
                self.provider_env = dict(penv.environment)
                if penv.revision:
                    await ack_provider_environment(self.link, penv.revision)

        self._inference_task = asyncio.ensure_future(follow_route())
        # Who connects is recorded at connect() by the sandbox's seccomp filter
        # (every launch hands its listener here); the proxy trusts nothing else.
        writable = self.ctx.policy.get("filesystem", {}).get("read_write", ())
        # The sandbox's init (pid 1 of its PID namespace, a python reaping orphans) is
        # nobody's ancestor for a rule: an orphan's walk ends there.
        init = (self.namespaces.pid,) if self.namespaces is not None else ()
        self.attributor = ConnectAttributor(writable=writable, sandbox_uid=self.ctx.uid, stop_at=init)
        self.proxy = ProxyServer(
            self.cfg.sandbox_id,
            self.engine,
            compiled,
            hosts=hosts,
            identity=IdentityResolver(netns=self.ctx.netns, stop_at=init, attributor=self.attributor),
            inspector=self._make_inspector(),
            inference=self.router,
        )
        await self.proxy.start(sock)

    def _make_inspector(self):
        """HTTP inspection for ``protocol: rest`` endpoints (POLICY.md §3): leaves from
        the sandbox CA; upstream TLS trusts the system roots plus the PEM file in
        ``$OPENSHELL_EXTRA_CA`` (an unreadable file stops the start: fail closed)."""
        from openshell.supervisor.deferred import DeferredInspector

        hooks = [self.credential_hook] if self.credential_hook is not None else []
        # Built on the first inspected connection (its imports are ~25 ms of every start otherwise).
        return DeferredInspector(self.ca, extra_ca=os.environ.get("OPENSHELL_EXTRA_CA") or None, hooks=hooks)

    # ------------------------------------------------------------------ launching
    def _launch(self, argv: list[str], request_env: dict, pty, stdin, stdout, stderr) -> subprocess.Popen:
        from openshell.supervisor.launcher import LaunchSpec, spawn
        from openshell.supervisor.sandbox_env import sandbox_environment

        assert self.ctx is not None
        env = sandbox_environment(
            sandbox_name=self.name,
            proxy_ip=self.ctx.extra["netns"]["proxy_ip"],
            user=self.ctx.policy.get("process", {}).get("run_as_user", "sandbox"),
            spec_env={**self.spec_env, **self.provider_env},
            request_env=request_env,
            extra_path=self.extra_path,
        )
        spec = LaunchSpec(ctx=self.ctx, argv=argv, env=env, cwd="/sandbox", mounts=self.mounts, layers=list(REQUIRED_LAYERS), tty=pty is not None)
        if self.attributor is None:  # launched before the proxy: nothing could attribute its connects
            raise RuntimeError("connect attribution is not running")
        spec.cgroup = self.cgroup.procs_files() if self.cgroup is not None else []
        chan = self.attributor.channel()
        spec.notify_fd = chan.fileno()
        try:
            return spawn(spec, stdin=stdin, stdout=stdout, stderr=stderr, namespaces=self.namespaces)
        finally:
            chan.close()

    def _dial_in_sandbox(self, family: int) -> socket.socket:
        """A TCP socket in the sandbox's network namespace (SSH port forwards to its loopback)."""
        from openshell.supervisor.nsutil import socket_in_netns

        assert self.ctx is not None and self.ctx.netns
        return socket_in_netns(self.ctx.netns, family)

    def _launch_session(self, req: SessionRequest, stdin, stdout, stderr) -> subprocess.Popen:
        if self._loop is not None:  # called from the SSH server's threads
            self._loop.call_soon_threadsafe(self._activity.set)  # an exec or upload may fill a file system
        return self._launch(req.argv, req.env, req.pty, stdin, stdout, stderr)

    # ------------------------------------------------------------------ loops
    async def _policy_loop(self) -> None:
        """Apply new policy revisions as the gateway streams them (``policy_reload``)."""
        assert self.reloader is not None  # set by _start, before this loop runs
        await self.reloader.run(self.link.watch_policy)

    def _policy_loaded(self, revision: int, policy) -> None:
        self.policy, self.policy_revision = policy, revision

    async def _housekeeping(self, interval: float = CHECK_INTERVAL, idle_interval: float = IDLE_CHECK_INTERVAL) -> None:
        """Every ``interval`` s while the sandbox is active, up to every ``idle_interval``
        s while it is not: log the entrypoint's exit, check the limits, and stop
        when the state directory is gone.

        Idle means its cgroup's memory charge and process count, the limit
        events and the status reason did not move since the last round; a
        session starting (exec, upload) counts as activity at once. So an idle
        sandbox that fills a file system at once is reported within about
        ``idle_interval`` s, an active one within ``interval``. The limit check
        runs in a task of its own (one at a time), so a report to a gateway
        that is away does not hold up the next rounds.
        """
        wait, last = interval, None
        check: Optional[asyncio.Task] = None
        try:
            while True:
                try:
                    await asyncio.wait_for(self._activity.wait(), wait)
                except asyncio.TimeoutError:
                    pass
                poked = self._activity.is_set()
                self._activity.clear()
                if self.entrypoint is not None and self.entrypoint.poll() is not None:
                    log.info("event=entrypoint_exited code=%s", self.entrypoint.returncode)
                    self.entrypoint = None
                if self._orphaned():
                    return
                # No waitpid(-1) here: it would steal the exit status of SSH session
                # processes that their Popen objects are waiting for (Popen then reports 0).
                usage = self.counters.activity() if self.counters is not None else (-1, -1)
                # The last check's findings count too: a file system it found full or freed.
                seen = (usage, self._limit_events, self._status_reason, self.entrypoint is None)
                idle = seen == last and not poked and -1 not in usage  # unreadable counters: never idle
                wait, last = (min(wait * 2, idle_interval) if idle else interval), seen
                if check is None or check.done():
                    # A task of its own: its report waits up to a call timeout for a gateway
                    # that is away, and the rounds (the orphan check above) must not.
                    check = asyncio.ensure_future(self._check_limits_logged())
        finally:
            if check is not None:
                check.cancel()

    async def _check_limits_logged(self) -> None:
        try:
            await self._check_limits()
        except Exception:  # noqa: BLE001 - a monitoring failure must not stop the sandbox
            log.exception("event=limit_check_failed")

    def _orphaned(self) -> bool:
        """Stop (and return True) when the sandbox's state directory is gone.

        The driver removes it only after stopping the supervisor, so a missing
        directory means the gateway's state was deleted under a running sandbox
        (e.g. a gateway removed with its files). Nothing can reach or delete such
        a sandbox any more; running on would keep its namespaces and processes,
        and retry a gateway that no longer exists, forever.
        """
        if self.state_dir.is_dir():
            return False
        log.warning("event=orphaned reason=state directory %s is gone; stopping the sandbox", self.state_dir)
        self.stop.set()
        return True

    async def _shutdown(self) -> None:
        if self.ssh:
            self.ssh.close()
        if self.proxy:
            try:
                await self.proxy.close()
            except Exception:  # noqa: BLE001 - shutting down regardless
                log.exception("event=proxy_close_failed")
        if self._inference_task is not None:
            self._inference_task.cancel()
        if self.router is not None:
            try:
                await self.router.close()
            except Exception:  # noqa: BLE001 - shutting down regardless
                log.exception("event=router_close_failed")
        if self.ctx is not None and self.ctx.netns:
            await asyncio.to_thread(kill_sandbox_processes, self.ctx.netns)
        if self.namespaces is not None:
            # After the grace above: ending init kills what is left in the PID
            # namespace and frees the IPC namespace (shared memory, queues). Init's
            # exit waits for the reaping of our own children there (the reap loop
            # has stopped): collect the entrypoint first.
            if self.entrypoint is not None:
                self.entrypoint.poll()
            await asyncio.to_thread(self.namespaces.close)
        if self.cgroup is not None:
            from openshell.supervisor.cleanup import remove_limits

            await asyncio.to_thread(remove_limits, self.state_dir)
        if self.layers_prepared and self.ctx is not None:
            from openshell.supervisor import launcher

            await asyncio.to_thread(launcher.teardown_layers, self.ctx, list(REQUIRED_LAYERS))
        if self.log_handler is not None:
            # The push loop is cancelled by now: the last lines (and these shutdown
            # events) would otherwise never reach `sandbox logs`.
            await flush(self.link, self.log_handler)
        await self.link.close()


def collector_on() -> None:
    """Turn the garbage collector back on after a start that ran with it off
    (``python -m openshell.supervisor`` disables it before its imports).

    What the start made (modules, the engine, the proxy: a few hundred cyclic
    leftovers at most) is moved to the permanent generation first, so later
    collections never walk those ~10^5 objects again. A no-op when it is on.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _ctx_dict(ctx: IsolationContext) -> dict:
    return asdict(ctx)


class _LogFormatter(logging.Formatter):
    """``logging.Formatter`` with the formatted second reused for every line in it:
    the proxy writes a line per connection and per inspected request, and
    ``localtime`` + ``strftime`` per line was a visible share of that."""

    _cached: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging API
        sec = int(record.created)
        if self._cached[0] != sec:
            self._cached = (sec, time.strftime("%Y-%m-%d %H:%M:%S", self.converter(sec)))
        return f"{self._cached[1]},{int(record.msecs):03d}"


def _load_config(path: str, wait: float) -> SupervisorConfig:
    """The config file; with ``wait`` > 0 it may not be there yet (or only partly: it is
    copied in by the container engine): the start's imports run in a thread meanwhile,
    and the file is read every 5 ms until it parses or ``wait`` seconds have passed.

    :raises OSError, ValueError, KeyError: missing or bad after the wait.
    """
    if wait <= 0:
        return SupervisorConfig.load(path)
    threading.Thread(target=_preload_quietly, name="preload", daemon=True).start()
    t0 = time.monotonic()
    deadline = t0 + wait
    while True:
        try:
            cfg = SupervisorConfig.load(path)
            # How the start splits: the interpreter and main's imports (since exec) vs the wait.
            log.info("event=config_loaded since_exec_ms=%d waited_ms=%d", _ms_since_exec(), (time.monotonic() - t0) * 1000)
            return cfg
        except (OSError, ValueError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def _ms_since_exec() -> int:
    """Milliseconds since this process started (``/proc/self/stat``; 10 ms resolution); -1 if unknown."""
    try:
        with open("/proc/self/stat", "rb") as f:
            start_ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        return int((time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")) * 1000)
    except (OSError, ValueError, IndexError):
        return -1


def _preload_quietly() -> None:
    """:func:`_preload`'s imports, before the config (so the engine) is known; a failure
    shows again when the start preloads."""
    try:
        _import_start_modules()
    except Exception:  # noqa: BLE001 - reported by the start's own _preload
        pass


def main(argv: list[str] | None = None) -> None:
    """Console script ``openshell-sandbox --config FILE``; exits 0 on a clean stop."""
    parser = argparse.ArgumentParser(prog="openshell-sandbox", description="Run one sandbox's supervisor (started by a compute driver).")
    parser.add_argument("--config", required=True, help="supervisor.json written by the compute driver")
    parser.add_argument(
        "--wait-config",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for the config file to appear (the docker driver copies it in after starting the container)",
    )
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_LogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=os.environ.get("OPENSHELL_LOG_LEVEL", "INFO").upper(), handlers=[handler])
    # Not in the format: skip the pid, thread and process-name lookups every record pays.
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    if os.geteuid() != 0:
        log.error("event=start_failed reason=the supervisor must run as root")
        sys.exit(1)
    cfg = _load_config(args.config, args.wait_config)

    async def _run() -> int:
        # The gRPC channel binds to the running loop, so build everything inside it.
        return await Supervisor(cfg).run()

    sys.exit(asyncio.run(_run()))
