"""The ``docker`` compute driver: one Docker container per sandbox.

Each sandbox is a container ``openshell-<id>`` of its image (``--from``;
default ``openshell/sandbox:latest``) with labels ``openshell.sandbox.id``,
``openshell.sandbox.name`` and ``openshell.sandbox.workspace``. Its process 1 is
the supervisor, run by the relocatable runtime mounted read-only at
``/.openshell`` (:mod:`.runtime`), which applies the same isolation as with
``local`` inside the container: network namespaces + proxy, Landlock, seccomp,
PID/IPC/UTS/mount namespaces. The container:

- shares the host's network namespace (the supervisor reaches the gateway on
  loopback and makes each sandbox's own network namespaces, as ``local`` does);
- has every capability dropped except those the supervisor uses
  (:data:`CAPABILITIES`); not ``--privileged``; Docker's seccomp profile is off
  (the 20.10 profile refuses the Landlock system calls): the supervisor installs
  its own, stricter filter on every sandbox process;
- gets ``--cpus``, ``--memory`` (no swap beyond it) and ``--pids-limit`` from
  the sandbox's limits: the container runtime enforces them, the supervisor makes
  no cgroup of its own; ``disk`` is not enforced (``/sandbox`` is a directory in
  the container's writable layer, kept across stop/start, gone with delete);
- receives its config and the gateway's client certificate by ``put_archive``
  into ``/var/lib/openshell`` (0700, root): no host path of the gateway's state
  is mounted, so none shows in the sandbox's mountinfo. To save the
  interpreter's start (~0.3-0.4 s) on create, the container is started first and
  the supervisor waits for the file (``--wait-config``; the config is the tar's
  last member, so the certificates are there once it parses).

The SSH socket is on a host directory ``/run/openshell/docker/<id>/`` bound at
``/run/openshell/ssh`` (0700). The host keeps ``<state>/sandboxes/<id>/stopped``
while a sandbox is stopped on request. A restarted gateway finds its sandboxes'
containers by name and label. Engine events (OOM kill, container exit) reach
``WatchSandbox`` through :meth:`ComputeDriver.report_event`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from openshell.plugin import ComputeDriver, DriverContext, SandboxStatus, SshEndpoint

from openshell_plugin_docker import disk, dockerd, images
from openshell_plugin_docker.runtime import Runtime, ensure_runtime, prune_runtimes, touch

log = logging.getLogger("openshell.drivers.docker")

LABEL_ID = "openshell.sandbox.id"
LABEL_NAME = "openshell.sandbox.name"
LABEL_WORKSPACE = "openshell.sandbox.workspace"
#: the only capabilities a sandbox container has (the supervisor's needs): namespaces and
#: mounts (SYS_ADMIN), veth + addresses (NET_ADMIN), reading sandbox processes' /proc
#: identity and seccomp notifications (SYS_PTRACE), dropping to the sandbox user
#: (SETUID, SETGID, SETPCAP), files of other owners (CHOWN, DAC_OVERRIDE, FOWNER),
#: signals to sandbox processes (KILL)
CAPABILITIES = ("SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SETUID", "SETGID", "SETPCAP", "CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL")
CONFIG_DIR = "/var/lib/openshell"  # in the container
WORKDIR = f"{CONFIG_DIR}/state/workdir"  # the supervisor's workdir (shown as /sandbox), in the container
SSH_DIR = Path("/run/openshell/docker")  # on the host, one 0700 directory per sandbox
STOP_GRACE = 10  # seconds between SIGTERM and SIGKILL
CONFIG_WAIT = 60  # seconds a started supervisor waits for its config to be copied in
STOPPED_MARKER = "stopped"
#: the gateway's ``$OPENSHELL_EXTRA_CA`` (extra trust roots for upstream TLS), copied
#: into each container: the gateway host's path means nothing there
EXTRA_CA = f"{CONFIG_DIR}/tls/extra-ca.pem"


class DockerDriver(ComputeDriver):
    """Runs each sandbox as a Docker container (see the module docstring).

    :param ctx: the gateway's ``DriverContext``. Connects to ``$OPENSHELL_DOCKER_HOST``
        or starts the private engine (:mod:`.dockerd`), and builds the supervisor's
        runtime once (:mod:`.runtime`).
    :raises dockerd.DockerdError: no engine.
    """

    name = "docker"
    summary = "One Docker container per sandbox (images, --from); the supervisor injected read-only"
    supports_images = True

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        import docker

        url = dockerd.engine_url()
        if not os.environ.get("OPENSHELL_DOCKER_HOST"):
            dockerd.start()
        self.client = docker.DockerClient(base_url=url, timeout=120)
        # Built in the background (the first build runs ldd over every extension
        # module: seconds); create waits for it.
        self._runtime: Runtime | BaseException | None = None
        self._runtime_ready = threading.Event()
        threading.Thread(target=self._build_runtime, name="docker-driver-runtime", daemon=True).start()
        self._requested_stop: set[str] = set()
        #: sandboxes whose create() runs: no container yet is not "gone" (the first create
        #: waits seconds for the runtime build, then for the image check and config copy)
        self._creating: set[str] = set()
        #: image id -> whether it has /bin/sh (images are immutable: asked once)
        self._has_shell: dict[str, bool] = {}
        from openshell.plugin import supervisor_entry_points

        # The same interpreter and packages run in the container (the runtime): the values hold there.
        self._plugins = supervisor_entry_points()
        self._closed = False
        self._events_stream: Any = None
        known = self.client.containers.list(all=True, filters={"label": LABEL_ID})
        log.info("event=docker_driver_ready engine=%s containers=%d", url, len(known))
        self._events = threading.Thread(target=self._event_loop, name="docker-driver-events", daemon=True)
        self._events.start()

    def _build_runtime(self) -> None:
        try:
            self._runtime = ensure_runtime()
            log.info("event=runtime_ready path=%s", self._runtime.path)
        except BaseException as exc:  # noqa: BLE001 - reported by each create
            self._runtime = exc
        finally:
            self._runtime_ready.set()
        if isinstance(self._runtime, Runtime):
            self._prune_runtimes(self._runtime)

    def _prune_runtimes(self, current: Runtime) -> None:
        """Remove old runtimes of earlier builds (~50-200 MB each): never the current one,
        nor one any container of the engine mounts (running or stopped), nor one another
        gateway used within the grace period (:func:`runtime.prune_runtimes`)."""
        try:
            removed = prune_runtimes(current.path, runtime_mounts_in_use(self.client), cache_root=current.path.parent)
        except Exception as exc:  # noqa: BLE001 - the engine did not answer: prune nothing
            log.warning("event=runtime_prune_skipped reason=%s", exc)
            return
        if removed:
            log.info("event=runtime_pruned count=%d dirs=%s", len(removed), ",".join(d.name for d in removed))

    @property
    def runtime(self) -> Runtime:
        """The supervisor's runtime (waits for the build). :raises RuntimeError_: it failed."""
        self._runtime_ready.wait()
        if isinstance(self._runtime, BaseException):
            raise self._runtime
        assert self._runtime is not None
        if not (self._runtime.path / "bin" / "python3").is_file():
            # Pruned by another gateway after a long idle spell (or removed by hand): build again.
            self._runtime = ensure_runtime()
        touch(self._runtime.path)  # used now: another gateway's prune keeps it
        return self._runtime

    # ------------------------------------------------------------------ helpers
    def sandbox_dir(self, sandbox_id: str) -> Path:
        """Host directory of one sandbox's driver files (the stop marker)."""
        return Path(self.ctx.state_dir) / "sandboxes" / sandbox_id

    @staticmethod
    def container_name(sandbox_id: str) -> str:
        return f"openshell-{sandbox_id}"

    def _container(self, sandbox_id: str) -> Any | None:
        import docker.errors

        try:
            return self.client.containers.get(self.container_name(sandbox_id))
        except docker.errors.NotFound:
            return None

    def _resolve_image(self, ref: str) -> str:
        """The local image ``ref`` names (the default image is built when missing).

        A Dockerfile or directory is built by the CLI (``--from``), never here: the
        gateway takes image references only.

        :raises images.ImageError: not in the engine (never pulled), or the default build failed.
        """
        import docker.errors

        if not ref:
            ref = images.DEFAULT_IMAGE
        try:
            self.client.images.get(ref)
            return ref
        except docker.errors.ImageNotFound:
            pass
        if ref == images.DEFAULT_IMAGE:
            images.build_default(self.client, progress=lambda line: log.info("event=image_build %s", line[:200]))
            return ref
        # Never pulled: the gateway dials no registry on a sandbox's behalf.
        raise images.ImageError(
            f"image '{ref}' is not in the docker engine; build it first ('openshell images build', or --from ./Dockerfile) or load it into the engine"
        )

    def _config_tar(self, sandbox: Mapping[str, Any]) -> bytes:
        secret = sandbox["secret"]
        if isinstance(secret, bytes):
            secret = secret.hex()
        sid = str(sandbox["id"])
        config = {
            "sandbox_id": sid,
            "name": sandbox.get("name", ""),
            "gateway_endpoint": self.ctx.gateway_endpoint,
            "ca_cert": f"{CONFIG_DIR}/tls/ca.pem",
            "client_cert": f"{CONFIG_DIR}/tls/client.pem",
            "client_key": f"{CONFIG_DIR}/tls/client.key",
            "secret": secret,
            "netns_index": int(sandbox["netns_index"]),
            "state_dir": f"{CONFIG_DIR}/state",
            "ssh_socket": "/run/openshell/ssh/ssh.sock",
            "resources": dict((sandbox.get("spec") or {}).get("resources") or {}),
            "container": True,
            "plugins": self._plugins,
        }
        files = {
            "openshell/tls/ca.pem": (Path(self.ctx.ca_cert).read_bytes(), 0o600),
            "openshell/tls/client.pem": (Path(self.ctx.client_cert).read_bytes(), 0o600),
            "openshell/tls/client.key": (Path(self.ctx.client_key).read_bytes(), 0o600),
            # last: a started supervisor waits for this file to parse, and then finds the certificates
            "openshell/supervisor.json": (json.dumps(config).encode(), 0o600),
        }
        extra_ca = _extra_ca()
        if extra_ca is not None:
            files["openshell/tls/extra-ca.pem"] = (extra_ca, 0o600)
        return images.tar_of(files, dirs={"openshell": 0o700, "openshell/tls": 0o700})

    # ------------------------------------------------------------------ API
    def create(self, sandbox: Mapping[str, Any]) -> None:
        """Create and start the sandbox's container.

        :raises images.ImageError: the image is missing, cannot be built, or has no ``/bin/sh``.
        :raises docker.errors.APIError: the engine refused the container.
        """
        sid = str(sandbox["id"])
        self._creating.add(sid)  # set operations are atomic under the GIL
        try:
            self._create(sandbox)
        finally:
            self._creating.discard(sid)

    def _create(self, sandbox: Mapping[str, Any]) -> None:
        """The container, started as early as possible: the supervisor's interpreter
        starts and imports (~0.3-0.4 s) while the config is copied in (it waits for it,
        ``--wait-config``). Steps and their ms are logged (``event=container_started``)."""
        from concurrent.futures import ThreadPoolExecutor

        from docker.types import Mount
        from openshell.plugin import limits_for

        t0 = time.perf_counter()
        steps: dict[str, float] = {}

        def step(name: str) -> None:
            steps[name] = round((time.perf_counter() - t0) * 1000, 1)

        sid = str(sandbox["id"])
        spec = sandbox.get("spec") or {}
        image = self._resolve_image(str(spec.get("image") or ""))
        limits = limits_for(spec.get("resources") or {})
        ssh_dir = SSH_DIR / sid
        ssh_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(ssh_dir, 0o700)
        os.chmod(SSH_DIR, 0o700)
        d = self.sandbox_dir(sid)
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        mounts = [Mount(target=dst, source=src, type="bind", read_only=True) for src, dst in self.runtime.mounts]
        mounts.append(Mount(target="/run/openshell/ssh", source=str(ssh_dir), type="bind"))
        step("image")
        resources: dict[str, Any] = {}
        if limits.memory is not None:
            resources["mem_limit"] = limits.memory
            resources["memswap_limit"] = limits.memory
        if limits.cpu_milli is not None:
            resources["nano_cpus"] = limits.cpu_milli * 1_000_000
        if limits.pids is not None:
            resources["pids_limit"] = limits.pids
        stale = self._container(sid)
        if stale is not None:
            stale.remove(force=True)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="docker-disk") as pool:
            workdir = None
            if limits.disk is not None:
                # The writable layer has no size limit on this engine: the workdir gets its own
                # file system (mkfs + loop mount, tens of ms), made while the container is created.
                (d / disk.MOUNTPOINT).mkdir(mode=0o700, exist_ok=True)  # a bind source must exist at create
                workdir = pool.submit(disk.prepare, d, limits.disk)
                mounts.append(Mount(target=WORKDIR, source=str(d / disk.MOUNTPOINT), type="bind"))
            try:
                container = self._create_container(sandbox, image, mounts, resources, workdir, step)
            except BaseException:
                if workdir is not None:
                    workdir.exception()  # wait: never release a mount still being made
                disk.release(d)
                raise
        log.info(
            "event=container_started sandbox=%s container=%s image=%s ms=%s", sid, container.short_id, image, ",".join(f"{k}:{v}" for k, v in steps.items())
        )
        self.report_event(sid, "ContainerStarted", f"container {container.short_id} of image {image} started", image=image)

    def _create_container(
        self, sandbox: Mapping[str, Any], image: str, mounts: list, resources: dict[str, Any], workdir: Any, step: Callable[[str], None]
    ) -> Any:
        """Create and start the container, check the image's shell, copy the config in;
        the container is removed again on any failure.

        :param workdir: the future of :func:`disk.prepare` (None: no disk limit); awaited before the start.
        """
        sid = str(sandbox["id"])
        container = self.client.containers.create(
            image,
            name=self.container_name(sid),
            entrypoint=[self.runtime.python, "-m", "openshell.supervisor", "--config", f"{CONFIG_DIR}/supervisor.json", "--wait-config", str(CONFIG_WAIT)],
            command=[],
            user="0:0",
            working_dir="/",
            environment=_container_env(),
            labels={LABEL_ID: sid, LABEL_NAME: str(sandbox.get("name", "")), LABEL_WORKSPACE: str(sandbox.get("workspace", ""))},
            network_mode="host",
            cap_drop=["ALL"],
            cap_add=list(CAPABILITIES),
            security_opt=["seccomp=unconfined", "no-new-privileges=false"],
            mounts=mounts,
            detach=True,
            **resources,
        )
        step("create")
        try:
            if workdir is not None:
                workdir.result()
                step("disk")
            container.start()
            step("start")
            self._check_shell(container, image)
            step("shell")
            container.put_archive("/var/lib", self._config_tar(sandbox))
            step("config")
        except BaseException:
            container.remove(force=True)
            raise
        return container

    def _check_shell(self, container: Any, image: str) -> None:
        """:raises images.ImageError: the image has no ``/bin/sh`` (once per image id, then cached)."""
        import docker.errors

        image_id = str(container.attrs.get("Image") or image)
        if image_id not in self._has_shell:
            try:
                container.get_archive("/bin/sh")
                self._has_shell[image_id] = True
            except docker.errors.NotFound:
                self._has_shell[image_id] = False
        if not self._has_shell[image_id]:
            raise images.ImageError(f"image '{image}' has no /bin/sh; a sandbox image needs a shell (sessions and exec run through it)")

    def status(self, sandbox_id: str) -> SandboxStatus:
        """``PROVISIONING`` (the supervisor reports READY itself) while the container runs;
        ``STOPPED`` when stopped on request; ``ERROR`` with the reason otherwise."""
        try:
            c = self._container(sandbox_id)
        except Exception as exc:  # noqa: BLE001 - the engine is unreachable: say so, never raise
            return SandboxStatus("ERROR", f"docker engine unreachable: {exc}")
        stopped = (self.sandbox_dir(sandbox_id) / STOPPED_MARKER).exists()
        if c is None:
            if sandbox_id in self._creating:
                return SandboxStatus("PROVISIONING")
            return SandboxStatus("ERROR", f"container {self.container_name(sandbox_id)} is gone")
        state = c.attrs.get("State", {})
        # "created": made, not yet started (create() is copying the config in)
        if state.get("Running") or state.get("Status") in ("created", "restarting"):
            return SandboxStatus("PROVISIONING")
        if stopped:
            return SandboxStatus("STOPPED", "stopped on request; 'openshell sandbox start' runs it again")
        return SandboxStatus("ERROR", _exit_reason(c))

    def delete(self, sandbox_id: str, keep_workdir: bool = False) -> None:
        """Stop (SIGTERM, SIGKILL after ``STOP_GRACE`` s) and remove the container. Idempotent.

        ``keep_workdir`` copies ``/sandbox`` out first, to ``<state>/sandboxes/<id>-workdir.tar``.
        """
        c = self._container(sandbox_id)
        if c is not None:
            self._requested_stop.add(sandbox_id)
            try:
                c.stop(timeout=STOP_GRACE)
            except Exception:  # noqa: BLE001 - removed below by force anyway
                pass
            if keep_workdir:
                self._keep_workdir(c, sandbox_id)
            c.remove(force=True, v=True)
        disk.release(self.sandbox_dir(sandbox_id))
        shutil.rmtree(SSH_DIR / sandbox_id, ignore_errors=True)
        shutil.rmtree(self.sandbox_dir(sandbox_id), ignore_errors=True)
        self._requested_stop.discard(sandbox_id)

    def _keep_workdir(self, c: Any, sandbox_id: str) -> None:
        out = Path(self.ctx.state_dir) / "sandboxes" / f"{sandbox_id}-workdir.tar"
        try:
            stream, _ = c.get_archive(WORKDIR)
            with open(out, "wb") as f:
                for chunk in stream:
                    f.write(chunk)
            log.info("event=workdir_kept sandbox=%s path=%s", sandbox_id, out)
        except Exception as exc:  # noqa: BLE001 - delete goes on; the loss is logged
            log.warning("event=workdir_keep_failed sandbox=%s reason=%s", sandbox_id, exc)

    def stop(self, sandbox_id: str) -> None:
        """Stop the container (its processes end), keeping it and ``/sandbox``. Idempotent."""
        c = self._container(sandbox_id)
        if c is None:
            return
        d = self.sandbox_dir(sandbox_id)
        d.mkdir(parents=True, exist_ok=True)
        (d / STOPPED_MARKER).write_text(f"{time.time():.3f}\n")
        self._requested_stop.add(sandbox_id)
        c.stop(timeout=STOP_GRACE)
        log.info("event=container_stopped sandbox=%s", sandbox_id)
        self.report_event(sandbox_id, "ContainerStopped", "container stopped; /sandbox is kept")

    def start(self, sandbox: Mapping[str, Any]) -> None:
        """Start a stopped sandbox's container again (same container, same ``/sandbox``).

        :raises FileNotFoundError: the container is gone (deleted): create the sandbox anew.
        """
        sid = str(sandbox["id"])
        c = self._container(sid)
        if c is None:
            raise FileNotFoundError(f"container {self.container_name(sid)} is gone; it cannot be started, create the sandbox anew")
        if c.attrs.get("State", {}).get("Running"):
            return
        d = self.sandbox_dir(sid)
        if (d / disk.IMAGE).exists():
            disk.mount(d / disk.IMAGE, d / disk.MOUNTPOINT)  # gone after a host reboot: the bind would show an empty directory
        c.put_archive("/var/lib", self._config_tar(sandbox))
        (self.sandbox_dir(sid) / STOPPED_MARKER).unlink(missing_ok=True)
        self._requested_stop.discard(sid)
        c.start()
        self.report_event(sid, "ContainerStarted", f"container {c.short_id} started again")

    def ssh_endpoint(self, sandbox_id: str) -> SshEndpoint:
        """The supervisor's SSH unix socket, on the host side of its bind mount."""
        return SshEndpoint(unix_path=str(SSH_DIR / sandbox_id / "ssh.sock"))

    def close(self) -> None:
        """Stop following engine events (the containers keep running). Idempotent."""
        self._closed = True
        stream = self._events_stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - closing a dead stream
                pass
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------ engine events
    def _event_loop(self) -> None:
        """Turn the engine's container events (``oom``, ``die``) into sandbox events."""
        while not self._closed:
            try:
                self._events_stream = self.client.events(decode=True, filters={"type": "container", "label": LABEL_ID})
                for ev in self._events_stream:
                    self._on_event(ev)
            except Exception as exc:  # noqa: BLE001 - the engine went away: retry
                if self._closed:
                    return
                log.debug("event=docker_events_lost reason=%s", exc)
            time.sleep(1.0)

    def _on_event(self, ev: Mapping[str, Any]) -> None:
        attrs = (ev.get("Actor") or {}).get("Attributes") or {}
        sid = attrs.get(LABEL_ID)
        action = str(ev.get("Action") or ev.get("status") or "")
        if not sid:
            return
        if action == "oom":
            self.report_event(sid, "OOMKilled", "a process of the sandbox was killed at the container's memory limit", warning=True)
        elif action == "die":
            code = attrs.get("exitCode", "?")
            requested = sid in self._requested_stop
            self.report_event(
                sid,
                "ContainerExited",
                f"container exited (exit code {code})" + (" on request" if requested else ""),
                warning=not requested,
                exit_code=str(code),
            )


def runtime_mounts_in_use(client: Any) -> set[str]:
    """Host paths bind-mounted into any container of the engine (running or stopped).

    :raises docker.errors.APIError: the engine did not answer (then nothing may be pruned).
    """
    used: set[str] = set()
    for c in client.containers.list(all=True):
        for m in c.attrs.get("Mounts") or []:
            if m.get("Type") == "bind" and m.get("Source"):
                used.add(str(m["Source"]))
    return used


def _exit_reason(c: Any) -> str:
    state = c.attrs.get("State", {})
    reason = f"container exited (exit code {state.get('ExitCode')})"
    if state.get("OOMKilled"):
        reason += ", killed at its memory limit"
    if state.get("Error"):
        reason += f": {state['Error']}"
    else:
        try:
            tail = [ln for ln in c.logs(tail=5).decode(errors="replace").splitlines() if ln.strip()]
        except Exception:  # noqa: BLE001
            tail = []
        if tail:
            reason += f": {tail[-1][-300:]}"
    return reason


def _extra_ca() -> bytes | None:
    """The PEM file ``$OPENSHELL_EXTRA_CA`` names (the gateway's environment), or None.

    :raises OSError: it is set but cannot be read: the create fails (fail closed, as
        the local driver's supervisor does), never a sandbox without the trust asked for.
    """
    path = os.environ.get("OPENSHELL_EXTRA_CA")
    if not path:
        return None
    return Path(path).read_bytes()


def _container_env() -> dict[str, str]:
    """The supervisor's environment in the container: ``PATH``, and ``OPENSHELL_EXTRA_CA``
    pointing at the copy of the gateway's extra trust roots (:data:`EXTRA_CA`)."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    if os.environ.get("OPENSHELL_EXTRA_CA"):
        env["OPENSHELL_EXTRA_CA"] = EXTRA_CA
    return env
