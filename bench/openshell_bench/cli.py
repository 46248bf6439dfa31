"""Command line of the benchmark harness: pick figures, run them, print and save.

Usage::

    python bench/run.py                      # every figure, full sizes (7-10 min here)
    python bench/run.py --quick decisions    # one cheap figure, small sizes
    python bench/run.py throughput setup --peers tinyproxy,squid
    nox -s bench -- --quick
    python bench/run.py --with-docker lifecycle   # also measure `docker run --rm` (private dockerd)

Exit codes: 0 when every selected figure ran or was skipped with a reason,
1 when a figure failed (the error is in the JSON and the table), 2 usage error,
130 when interrupted (Ctrl-C or SIGTERM: whatever the run started is torn down
first, and the document is still written, with ``"interrupted": true`` and the
figures finished so far).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from openshell_bench import env
from openshell_bench.context import Context, Sizes
from openshell_bench.docker_peer import ENV_FLAG
from openshell_bench.fig_decisions import decisions
from openshell_bench.fig_inspect import inspection
from openshell_bench.fig_lifecycle import lifecycle
from openshell_bench.fig_network import setup_latency, throughput
from openshell_bench.fig_transfer import transfer
from openshell_bench.fig_tui import tui_latency
from openshell_bench.peers import PEERS
from openshell_bench.results import FigureResult, Skip, document, table, write

#: figure name -> function, in the order they run and print
FIGURES: dict[str, Callable[[Context], FigureResult]] = {
    "throughput": throughput,
    "setup": setup_latency,
    "inspect": inspection,
    "decisions": decisions,
    "lifecycle": lifecycle,
    "transfer": transfer,
    "tui": tui_latency,
}
DEFAULT_OUT = env.BENCH / "results" / "latest.json"
MAX_SANDBOXES = 16383  # live sandboxes per gateway (the store's netns index bound)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="OpenShell benchmarks with side-by-side peers. Prints a table and writes a JSON document.",
        epilog="example: python bench/run.py --quick decisions setup --peers tinyproxy",
    )
    p.add_argument("figures", nargs="*", metavar="figure", help=f"figures to run (default: all): {', '.join(FIGURES)}")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run in seconds, numbers not meaningful")
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated peers (default: {','.join(PEERS)}; '' for none)")
    p.add_argument(
        "--with-docker",
        action="store_true",
        default=os.environ.get(ENV_FLAG, "") not in ("", "0"),
        help="lifecycle: measure `docker run --rm` with a private dockerd (installs docker.io and "
        f"debootstrap if missing, builds the image once; never pulls). Also {ENV_FLAG}=1",
    )
    p.add_argument(
        "--max-sandboxes",
        type=int,
        metavar="N",
        help="lifecycle: how many sandboxes the density part creates and holds (default 100, 4 with --quick); a gateway holds at most 16383; memory is the limit first (~11 MiB each with the default policy; 1,000 held on a 24 GB machine)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where the JSON goes (default: {DEFAULT_OUT})")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the selected figures; return the exit code (see module docstring)."""
    args = _parser().parse_args(argv)
    unknown = [f for f in args.figures if f not in FIGURES]
    if unknown:
        print(f"error: unknown figure {', '.join(unknown)}; choose from {', '.join(FIGURES)}", file=sys.stderr)
        return 2
    peers = tuple(p for p in args.peers.split(",") if p)
    bad = [p for p in peers if p not in PEERS]
    if bad:
        print(f"error: unknown peer {', '.join(bad)}; choose from {', '.join(PEERS)}", file=sys.stderr)
        return 2
    selected = args.figures or list(FIGURES)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.max_sandboxes is not None:
        if not 1 <= args.max_sandboxes <= MAX_SANDBOXES:
            print(f"error: --max-sandboxes must be 1-{MAX_SANDBOXES} (a gateway holds at most {MAX_SANDBOXES} sandboxes)", file=sys.stderr)
            return 2
        sizes.max_sandboxes = args.max_sandboxes
    ctx = Context(sizes, peers, with_docker=args.with_docker)
    started = time.time()
    results: dict[str, FigureResult] = {}
    failed = interrupted = False
    # SIGTERM (timeout, a cancelled CI job) must tear down like Ctrl-C does: a
    # leftover gateway, sandbox or test host breaks the next run.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        for name in selected:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                res = FIGURES[name](ctx)
            except Skip as exc:
                res = FigureResult(name, status="skipped", reason=str(exc))
            except Exception as exc:  # noqa: BLE001 - one broken figure must not lose the others
                failed = True
                traceback.print_exc()
                res = FigureResult(name, status="error", reason=f"{type(exc).__name__}: {str(exc)[:300]}")
            res.seconds = round(time.perf_counter() - t0, 1)
            if args.quick:
                for target in res.targets:  # small sizes say nothing about a goal
                    target.met = None
            results[name] = res
            print(f"[bench] {name}: {res.status} in {res.seconds} s", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("[bench] interrupted: stopping what this run started ...", file=sys.stderr, flush=True)
    finally:
        # A second Ctrl-C or SIGTERM must not cut the teardown short (that is what
        # leaves gateways and test hosts behind).
        previous_int = signal.signal(signal.SIGINT, _patience)
        signal.signal(signal.SIGTERM, _patience)
        try:
            ctx.close()
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
    doc = document(results, quick=args.quick, started=started, interrupted=interrupted)
    write(doc, args.out)
    print(table(doc))
    print(f"\n(written to {args.out})")
    return 130 if interrupted else 1 if failed else 0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _patience(signum: int, frame: object) -> None:
    print("[bench] still stopping what this run started; a moment ...", file=sys.stderr, flush=True)
