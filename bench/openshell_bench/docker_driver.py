"""The lifecycle figure's ``docker`` driver rows (only with ``--with-docker``).

- ``openshell docker``: a second private gateway with ``--driver docker`` on
  OpenShell's private Docker Engine (``openshell_plugin_docker.dockerd``: started
  when not running, left running, as the driver itself does), sandboxes of the
  default image ``openshell/sandbox:latest`` (built or imported from its cache
  when missing). One unmeasured warm-up create (the supervisor's runtime and the
  engine's first container), then ``runs`` sequential create-to-READY / delete.
  Density: ``hold`` sandboxes kept at once, then the PSS of every process of
  their containers (the supervisor and what it started) plus each container's
  ``containerd-shim`` is divided by the count.
- ``docker run`` of the same image in the same engine, by the ``docker`` CLI:
  ``docker run --rm --network none IMAGE /bin/true`` (spawn to exit: create,
  start, run, exit, remove) and ``docker run -d --network none IMAGE sleep
  infinity`` (until the CLI returns: the container runs; removal not timed),
  one warm-up each, interleaved with the sandbox creates (one of each per
  round); memory: the last ``hold`` such ``sleep`` containers, PSS of the
  ``sleep`` process and its shim each.

The create-to-READY goal of issue 14: p50 within 1.5× of ``docker run --rm``'s
spawn-to-exit p50 of the same image.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

from openshell_bench import env
from openshell_bench.results import FigureResult, Skip, Target, percentile

IMAGE = "openshell/sandbox:latest"
GOAL_RATIO = 1.5
SUBJECT = "openshell docker"


def _engine() -> tuple[Any, str]:
    """``(docker client, engine url)`` of OpenShell's private engine (started if needed).

    :raises Skip: the docker plugin is not installed or the engine does not start.
    """
    try:
        import docker
        from openshell_plugin_docker import dockerd
    except ImportError as exc:
        raise Skip(f"the docker driver is not installed ({exc}); run scripts/setup.sh") from None
    try:
        url = dockerd.start()
    except dockerd.DockerdError as exc:
        raise Skip(f"the private docker engine did not start: {exc}") from None
    return docker.DockerClient(base_url=url, timeout=120), url


def _ensure_image(gw: env.BenchGateway, client: Any) -> None:
    import docker.errors

    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        gw.cli("images", "build", check=True, timeout=1800)


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2 :].split()[1])


def container_pss_kib(client: Any, container_ids: list[str]) -> tuple[int, int]:
    """PSS (KiB) of every process of the containers plus their shims; ``(pss, processes)``."""
    total = count = 0
    for cid in container_ids:
        pid = int(client.api.inspect_container(cid)["State"]["Pid"] or 0)
        if not pid:
            continue
        try:
            shim = _ppid(pid)
        except OSError:
            continue
        pids = [pid, *env.descendants(pid), shim]
        total += sum(env.pss_kib(p) for p in pids)
        count += len(pids)
    return total, count


def _timed(argv: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    return (time.perf_counter() - t0) * 1000, p.stdout.strip()


def docker_driver_rows(fig: FigureResult, runs: int, hold: int) -> None:
    """Add the docker driver's and plain ``docker run``'s rows and the 1.5× target, or skipped rows.

    The three timed operations are interleaved (create + delete a sandbox, ``docker
    run --rm``, ``docker run -d``, once each per round), so other load on the machine
    weighs on all of them alike and the ratio stays meaningful on a busy machine.
    """
    try:
        client, url = _engine()
    except Skip as exc:
        fig.skip_row(SUBJECT, "create-to-READY p50", "ms", str(exc))
        return
    docker_cli = [shutil.which("docker") or "docker", "--host", url]
    run_rm = [*docker_cli, "run", "--rm", "--network", "none", IMAGE, "/bin/true"]
    run_d = [*docker_cli, "run", "-d", "--network", "none", IMAGE, "sleep", "infinity"]
    creates: list[float] = []
    deletes: list[float] = []
    spawn: list[float] = []
    detached: list[float] = []
    started: list[str] = []
    held: list[str] = []
    try:
        with env.BenchGateway(driver="docker") as gw:
            _ensure_image(gw, client)
            # warm-up, not measured: the runtime build, the engine's first container, the CLI
            gw.create("bench-dk-warm", timeout=600)
            gw.delete("bench-dk-warm")
            _timed(run_rm)
            started.append(_timed(run_d)[1])
            for i in range(runs):
                creates.append(gw.create(f"bench-dk-{i}") * 1000)
                deletes.append(gw.delete(f"bench-dk-{i}") * 1000)
                spawn.append(_timed(run_rm)[0])
                ms, cid = _timed(run_d)
                detached.append(ms)
                started.append(cid)
                if len(started) > hold + 1:
                    subprocess.run([*docker_cli, "rm", "-f", started.pop(0)], capture_output=True, timeout=60, check=False)
            try:
                for i in range(hold):
                    gw.create(f"bench-dkd-{i}", timeout=180)
                    held.append(f"bench-dkd-{i}")
                ids = [
                    c.id
                    for c in client.containers.list(filters={"label": "openshell.sandbox.name"})
                    if c.labels.get("openshell.sandbox.name", "").startswith("bench-dkd-")
                ]
                pss, nproc = container_pss_kib(client, ids)
                plain = started[-hold:] if hold else started
                plain_pss, plain_nproc = container_pss_kib(client, plain)
            finally:
                for name in held:
                    gw.delete(name)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        fig.skip_row(SUBJECT, "create-to-READY p50", "ms", f"docker driver run failed: {str(exc)[-300:]}")
        return
    finally:
        for cid in started:
            subprocess.run([*docker_cli, "rm", "-f", cid], capture_output=True, timeout=60, check=False)
        client.close()
    base = percentile(spawn, 50)
    p50 = percentile(creates, 50)
    ratio = p50 / base if base else float("inf")
    fig.add(SUBJECT, "create-to-READY p50", p50, "ms", ratio=ratio, baseline="docker run --rm (same image)", note=f"{IMAGE}, {runs} sandboxes, private engine")
    fig.add(SUBJECT, "create-to-READY p99", percentile(creates, 99), "ms")
    fig.add(SUBJECT, "delete p50", percentile(deletes, 50), "ms")
    fig.add(SUBJECT, "delete p99", percentile(deletes, 99), "ms")
    if held:
        fig.add(SUBJECT, "memory per sandbox (PSS)", pss / len(held) / 1024, "MiB", note=f"{len(held)} held; {nproc} processes incl. containerd-shims")
    fig.add("docker run --rm (same image)", "spawn-to-exit p50", base, "ms", note=f"{IMAGE} /bin/true, --network none, OpenShell's engine, interleaved")
    fig.add("docker run --rm (same image)", "spawn-to-exit p99", percentile(spawn, 99), "ms")
    fig.add("docker run -d (same image)", "run-to-started p50", percentile(detached, 50), "ms", note="sleep infinity; removal not timed")
    fig.add("docker run -d (same image)", "run-to-started p99", percentile(detached, 99), "ms")
    if hold:
        n = len(started[-hold:])
        fig.add(
            "docker run -d (same image)",
            "memory per container (PSS)",
            plain_pss / max(n, 1) / 1024,
            "MiB",
            note=f"{n} held; {plain_nproc} processes incl. containerd-shims",
        )
    fig.targets.append(
        Target(
            "docker create-to-READY p50",
            f"≤ {GOAL_RATIO}× docker run --rm of the same image",
            f"{p50:.0f} ms = {ratio:.2f}× {base:.0f} ms",
            ratio <= GOAL_RATIO,
        )
    )
