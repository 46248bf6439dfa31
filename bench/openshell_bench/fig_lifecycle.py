"""Figure 5: sandbox lifecycle — create-to-READY, delete, density and memory.

- ``openshell``: ``CreateSandbox`` through the SDK client to a private gateway,
  polled (5 ms) until READY; ``DeleteSandbox`` until it answers COMPLETED.
  Sequential, one sandbox at a time, default policy, default command.
- density: sandboxes are created one after another and kept until the target
  count (or the first failure); then the proportional memory (PSS, shared
  pages split) of the gateway and of every process below it (supervisors,
  their SSH servers and entrypoints) is divided by the count; with them still
  running, ``LOADED_CREATES`` more sandboxes are created and deleted one after
  another (create-to-READY "while held": issue 17 judges it with ≥ 500 running).
- ``bwrap``: ``bwrap`` (Debian bubblewrap, installed by the harness when missing) with new namespaces (all of them)
  and a read-only root, running ``/bin/true``: spawn to exit.
- ``docker run --rm``: the same command in a locally imported image
  (``--network none``), against a private dockerd the harness starts and stops
  itself (``docker_peer.PrivateDocker``); only with ``--with-docker`` /
  ``OPENSHELL_BENCH_DOCKER=1``, otherwise skipped with a reason saying so.
- ``openshell docker`` and ``docker run (same image)``: the docker compute
  driver's create-to-READY, delete and memory per sandbox, next to plain
  ``docker run`` of its default image in the same engine
  (:mod:`openshell_bench.docker_driver`); also only with ``--with-docker``.
- ``openshell kubernetes``: the kubernetes driver's create-to-READY and delete
  through a gateway in a cluster (:mod:`openshell_bench.k8s_driver`); only with
  ``OPENSHELL_BENCH_K8S_GATEWAY=NAME``.

Each spawn peer gets one unmeasured warm-up run, then ``spawn_runs`` measured
ones; so does ``openshell`` (one create and delete before the timed ones, shown
as its own row: when the figure runs first, the gateway has just started and
that create also waits for the rest of the fork server's warm-up).
"""

from __future__ import annotations

import shutil
import subprocess
import time

from openshell_bench import env
from openshell_bench.context import Context
from openshell_bench.docker_driver import docker_driver_rows
from openshell_bench.docker_peer import ENV_FLAG, IMAGE, PrivateDocker
from openshell_bench.k8s_driver import k8s_driver_rows
from openshell_bench.peers import apt_install
from openshell_bench.results import FigureResult, Skip, Target, percentile

SPAWN_COMMAND = ["/bin/true"]  # what bwrap and docker run, spawn to exit
READY_P50_MS = 100  # create-to-READY goals
READY_P99_MS = 250
DENSITY_PSS_MIB = 12  # issue 17: memory per sandbox (supervisor and everything below it)
LOADED_TARGET_HELD = 500  # issue 17: the start-time goals hold with this many running
LOADED_CREATES = 20  # creates timed while the density sandboxes are held


def _spawn_times(argv: list[str], runs: int) -> list[float]:
    """Spawn-to-exit of ``argv`` in ms, ``runs`` times after one unmeasured warm-up run."""
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _docker_rows(fig: FigureResult, ctx: Context, argv: list[str]) -> None:
    """Add the ``docker run --rm`` rows (private dockerd), or a skipped row with the reason."""
    if not ctx.with_docker:
        fig.skip_row(
            "docker run --rm",
            "spawn-to-exit p50",
            "ms",
            f"not asked: run with --with-docker (or {ENV_FLAG}=1) to install docker.io + debootstrap if missing and measure against a private dockerd",
        )
        return
    try:
        with PrivateDocker() as dk:
            times = _spawn_times([*dk.docker, "run", "--rm", "--network", "none", IMAGE, *argv], ctx.sizes.spawn_runs)
            version = dk.version
    except Skip as exc:
        fig.skip_row("docker run --rm", "spawn-to-exit p50", "ms", str(exc))
        return
    except subprocess.CalledProcessError as exc:
        fig.skip_row("docker run --rm", "spawn-to-exit p50", "ms", f"docker run failed: {(exc.stderr or b'').decode(errors='replace').strip()[-200:]}")
        return
    fig.add("docker run --rm", "spawn-to-exit p50", percentile(times, 50), "ms", note=f"{' '.join(argv)}, --network none, dockerd {version}")
    fig.add("docker run --rm", "spawn-to-exit p99", percentile(times, 99), "ms")


def _bwrap() -> tuple[str | None, str]:
    """``(path, "")`` of ``bwrap``, installing Debian ``bubblewrap`` when missing, or ``(None, reason)``."""
    found = shutil.which("bwrap")
    if found is None:
        try:
            apt_install(["bubblewrap"])
        except Skip as exc:
            return None, str(exc)
        found = shutil.which("bwrap")
    return (found, "") if found else (None, "bubblewrap installed but bwrap is not on PATH")


def lifecycle(ctx: Context) -> FigureResult:
    """Measure the lifecycle figure (see module docstring)."""
    s = ctx.sizes
    fig = FigureResult(f"sandbox lifecycle (p50/p99 over {s.lifecycle_sandboxes} sandboxes; density up to {s.max_sandboxes})")
    gw = ctx.gateway()
    # One unmeasured warm-up, as each spawn peer gets: on a gateway started just
    # now it also waits for the rest of the fork server's warm-up (at low priority
    # until a create asks for it). Shown on its own row, not in the p50/p99.
    warm_up = gw.create("bench-lc-warmup") * 1000
    gw.delete("bench-lc-warmup")
    creates, deletes = [], []
    for i in range(s.lifecycle_sandboxes):
        name = f"bench-lc-{i}"
        creates.append(gw.create(name) * 1000)
        deletes.append(gw.delete(name) * 1000)
    fig.add("openshell", "create-to-READY p50", percentile(creates, 50), "ms")
    fig.add("openshell", "create-to-READY p99", percentile(creates, 99), "ms")
    fig.add(
        "openshell",
        "create-to-READY, warm-up",
        warm_up,
        "ms",
        note="the run's first create, not in p50/p99 (the first after the gateway started when lifecycle runs first)",
    )
    fig.add("openshell", "delete p50", percentile(deletes, 50), "ms")
    fig.add("openshell", "delete p99", percentile(deletes, 99), "ms")

    spawn_runs = s.spawn_runs
    bwrap, why = _bwrap()
    if bwrap is None:
        fig.skip_row("bwrap", "spawn-to-exit p50", "ms", why)
    else:
        argv = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", *SPAWN_COMMAND]
        times = _spawn_times(argv, spawn_runs)
        fig.add("bwrap", "spawn-to-exit p50", percentile(times, 50), "ms", note="/bin/true, all namespaces")
        fig.add("bwrap", "spawn-to-exit p99", percentile(times, 99), "ms")
    _docker_rows(fig, ctx, SPAWN_COMMAND)
    if ctx.with_docker:
        docker_driver_rows(fig, s.docker_sandboxes, s.docker_hold)
    else:
        fig.skip_row("openshell docker", "create-to-READY p50", "ms", f"not asked: run with --with-docker (or {ENV_FLAG}=1) for the docker driver's rows")
    k8s_driver_rows(fig, s.k8s_sandboxes)

    # density
    gw_pid = gw.pid
    base_gw = env.pss_kib(gw_pid) if gw_pid else 0
    made, failure = 0, ""
    loaded: list[float] = []
    sup_pss = 0
    t0 = time.perf_counter()
    try:
        for i in range(s.max_sandboxes):
            try:
                gw.create(f"bench-dn-{i}", timeout=180)
            except Exception as exc:  # noqa: BLE001 - the first failure ends the density run; reported
                failure = f"sandbox {i + 1} failed: {str(exc)[:160]}"
                break
            made += 1
        fill_s = time.perf_counter() - t0
        if made:
            kids = env.descendants(gw_pid) if gw_pid else []
            sup_pss = sum(env.pss_kib(p) for p in kids)
            gw_pss = env.pss_kib(gw_pid) if gw_pid else 0
            fig.add("openshell", "concurrent sandboxes held", made, "sandboxes", note=failure or f"filled in {fill_s:.0f} s")
            fig.add("openshell", "supervisor memory per sandbox (PSS)", sup_pss / made / 1024, "MiB", note=f"{len(kids)} processes below the gateway")
            fig.add(
                "openshell",
                "gateway memory per sandbox (PSS growth)",
                max(gw_pss - base_gw, 0) / made / 1024,
                "MiB",
                note=f"gateway PSS {gw_pss / 1024:.0f} MiB with {made} sandboxes",
            )
        if made:
            # Issue 17 asks for start times while many sandboxes run: the same
            # create + delete, with the held ones still up.
            for i in range(min(s.lifecycle_sandboxes, LOADED_CREATES)):
                name = f"bench-ld-{i}"
                loaded.append(gw.create(name, timeout=180) * 1000)
                gw.delete(name)
            fig.add("openshell", "create-to-READY p50 while held", percentile(loaded, 50), "ms", note=f"{len(loaded)} creates with {made} sandboxes running")
            fig.add("openshell", "create-to-READY p99 while held", percentile(loaded, 99), "ms")
    finally:
        for i in range(made + (1 if failure else 0)):
            try:
                gw.delete(f"bench-dn-{i}")
            except Exception:  # noqa: BLE001 - best effort; BenchGateway.close deletes --all
                pass
    p50, p99 = percentile(creates, 50), percentile(creates, 99)
    fig.targets.append(Target("create-to-READY p50", f"≤ {READY_P50_MS} ms", f"{p50:.0f} ms", p50 <= READY_P50_MS))
    fig.targets.append(Target("create-to-READY p99", f"≤ {READY_P99_MS} ms", f"{p99:.0f} ms", p99 <= READY_P99_MS))
    fig.targets.append(Target("concurrent sandboxes", "100", f"{made} held (asked for {s.max_sandboxes})", made >= 100 if s.max_sandboxes >= 100 else None))
    if made:
        per = sup_pss / made / 1024
        # Issue 17: 1000 sandboxes at ≤ 12 MiB each; start times judged with ≥ 500 running.
        fig.targets.append(Target("memory per sandbox (issue 17)", f"≤ {DENSITY_PSS_MIB} MiB PSS", f"{per:.1f} MiB", per <= DENSITY_PSS_MIB))
    if loaded:
        lp50, lp99 = percentile(loaded, 50), percentile(loaded, 99)
        judged = made >= LOADED_TARGET_HELD
        fig.targets.append(
            Target(
                f"create-to-READY with {LOADED_TARGET_HELD} running",
                f"p50 ≤ {READY_P50_MS} ms, p99 ≤ {READY_P99_MS} ms",
                f"{lp50:.0f} / {lp99:.0f} ms with {made} running",
                (lp50 <= READY_P50_MS and lp99 <= READY_P99_MS) if judged else None,
            )
        )
    return fig
