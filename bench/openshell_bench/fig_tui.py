"""Figure: denial-to-screen latency — how long after a sandbox's connection is
denied the user sees it (issue 16: "see a denial appear within a second").

One READY sandbox (the run's ``net_sandbox``). Inside it, a ``python3`` loop
opens a connection to the sandbox's proxy, then stamps the time (unix seconds,
the host's clock: the ``local`` driver runs sandboxes on the host) and sends a
plain-HTTP request for ``bench.example.test:PORT``, a port the policy does not
allow; the proxy answers 403 and logs ``event=decision decision=DENIED``. Each
request uses its own port, so every denial is told apart. Between requests
the loop sleeps ``GAP`` seconds (a denial now and then, not a flood).

Two observers in this process stamp the moment they get each denial:

- ``WatchSandbox``: a thread iterating ``OpenShellClient.watch_sandbox`` (log
  lines at warning and above), as any SDK user would;
- ``openshell term``: the real Textual app, headless (``App.run_test``), with
  the sandbox view open; the stamp is taken when the view adds the denial's
  line to its log pane (the pane is painted on Textual's next refresh,
  at most a frame — ~17 ms — later).

Rows: p50 / p99 / max of (seen − sent) in ms for each observer. Nothing is
dialled: the denied requests end at the proxy.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from openshell_bench import env
from openshell_bench.context import Context
from openshell_bench.results import FigureResult, Skip, Target, percentile

GOAL_MS = 1000  # "within a second"
GAP = 0.3  # seconds between two denied requests
BASE_PORT = 9100  # denied ports: BASE_PORT + i (the policy allows 8080 only)

# Runs in the sandbox: argv[1] = count, argv[2] = gap; prints "port sent_unix" per request.
SANDBOX_LOOP = """
import os, socket, sys, time
from urllib.parse import urlsplit
proxy = urlsplit(os.environ.get("HTTP_PROXY") or os.environ["http_proxy"])
n, gap, base = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    port = base + i
    s = socket.create_connection((proxy.hostname, proxy.port))
    req = f"GET http://{HOST}:{port}/ HTTP/1.1\\r\\nHost: {HOST}:{port}\\r\\nConnection: close\\r\\n\\r\\n"
    t = time.time()
    s.sendall(req.encode())
    while s.recv(65536):
        pass
    s.close()
    print(port, repr(t), flush=True)
    time.sleep(gap)
"""


@contextmanager
def _client_env(gw: env.BenchGateway) -> Iterator[None]:
    """This process's client files pointed at the bench gateway (the app reads them)."""
    keys = ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "OPENSHELL_GATEWAY")
    with env.environ_set({**{k: gw.env[k] for k in keys}, "OPENSHELL_NO_VERSION_CHECK": "1"}):
        yield


def _watch_stamps(gw: env.BenchGateway, name: str, stamps: dict[int, float], ready: threading.Event) -> tuple[threading.Thread, Callable[[], None]]:
    """A thread stamping each denial (by port) as ``WatchSandbox`` delivers it, and what cancels its stream."""
    from openshell_cli.tui.model import denial_of

    watch = gw.client.watch_sandbox(name, status=True, logs=True, events=False, min_level="warning")

    def run() -> None:
        for ev in watch:
            if ev.kind == "status":
                ready.set()
            d = denial_of(ev)
            if d is not None and d.port >= BASE_PORT:
                stamps.setdefault(d.port, time.time())

    t = threading.Thread(target=run, name="bench-watch", daemon=True)
    t.start()
    return t, watch.cancel


def tui_latency(ctx: Context) -> FigureResult:
    """Measure the denial-to-screen figure (see module docstring)."""
    try:
        from openshell_cli.tui.app import SandboxesScreen, TermApp
        from openshell_cli.tui.log_view import CursorLog
        from openshell_cli.tui.sandbox_view import SandboxScreen
    except ImportError as exc:
        raise Skip(f"openshell-cli with its terminal UI is not installed ({exc})") from None
    runs = ctx.sizes.tui_denials
    fig = FigureResult(f"denial to screen: a denied request in a sandbox until WatchSandbox / openshell term shows it ({runs} denials)")
    gw = ctx.gateway()
    name = ctx.net_sandbox()
    watch_seen: dict[int, float] = {}
    tui_seen: dict[int, float] = {}
    sent: dict[int, float] = {}

    original_add = CursorLog.add

    def stamped_add(self: CursorLog, text, denial=None) -> None:  # noqa: ANN001 - CursorLog.add's
        original_add(self, text, denial)
        if denial is not None and denial.port >= BASE_PORT:
            tui_seen.setdefault(denial.port, time.time())

    watching = threading.Event()
    watcher, stop_watching = _watch_stamps(gw, name, watch_seen, watching)

    async def drive() -> None:
        app = TermApp(gateway=gw.name)
        async with app.run_test(size=(120, 34)) as pilot:
            deadline = time.monotonic() + 60
            while not (isinstance(app.screen, SandboxesScreen) and name in app.screen.rows):
                if time.monotonic() > deadline:
                    raise RuntimeError("the sandboxes view did not list the sandbox within 60 s")
                await pilot.pause(0.05)
            await app.push_screen(SandboxScreen(name))
            # The view is live once the log history is in; not "event=ready" itself: in a
            # full run the figures before this one logged thousands of lines since.
            while not app.screen.query_one("#log", CursorLog).lines:
                if time.monotonic() > deadline:
                    raise RuntimeError("the sandbox view did not show the sandbox's log within 60 s")
                await pilot.pause(0.05)
            watching.wait(30)
            code, out, err = await asyncio.to_thread(
                gw.run, name, ["python3", "-c", SANDBOX_LOOP.replace("{HOST}", env.HOST_NAME), str(runs), str(GAP), str(BASE_PORT)], 600
            )
            if code != 0:
                raise RuntimeError(f"the request loop in the sandbox failed ({code}): {err.strip()[-300:]}")
            for line in out.splitlines():
                port, t = line.split()
                sent[int(port)] = float(t)
            deadline = time.monotonic() + 10
            while len(tui_seen) < len(sent) and time.monotonic() < deadline:
                await pilot.pause(0.05)
            await pilot.press("q")

    CursorLog.add = stamped_add  # type: ignore[method-assign]
    try:
        with _client_env(gw):
            asyncio.run(drive())
    finally:
        CursorLog.add = original_add  # type: ignore[method-assign]
        stop_watching()
        watcher.join(5)

    for subject, seen in (("WatchSandbox", watch_seen), ("openshell term", tui_seen)):
        lat = [(seen[p] - t) * 1000 for p, t in sent.items() if p in seen]
        missed = len(sent) - len(lat)
        if not lat:
            fig.skip_row(subject, "denial-to-screen p50", "ms", f"none of {len(sent)} denials arrived")
            continue
        note = f"{len(lat)} denials, {GAP:g} s apart" + (f"; {missed} never arrived" if missed else "")
        fig.add(subject, "denied-to-seen p50", percentile(lat, 50), "ms", note=note)
        fig.add(subject, "denied-to-seen p99", percentile(lat, 99), "ms")
        fig.add(subject, "denied-to-seen max", max(lat), "ms")
        if subject == "openshell term":
            p99 = percentile(lat, 99)
            met = (p99 <= GOAL_MS and not missed) if runs >= 20 else None
            fig.targets.append(Target("denial on screen (openshell term) p99", f"≤ {GOAL_MS} ms", f"{p99:.0f} ms", met))
    return fig
