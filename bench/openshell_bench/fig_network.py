"""Figures 1 and 2: raw CONNECT tunnels — bulk throughput and connection setup.

Subjects, all measured by the same client (``loadclient``) against the same
test host in one run:

- ``direct``: the client in the root namespace straight to the test host (the limit);
- ``openshell``: the client inside a sandbox, through its supervisor's proxy
  (identity lookup, policy decision, destination safety, dial, splice relay);
- ``splice-ref``, ``tinyproxy``, ``squid``, ``proxy.py``, ``mitmproxy``: the client
  in the root namespace through the peer on loopback, as a plain CONNECT proxy.
  ``splice-ref`` does nothing but relay (C, blocking ``splice(2)``): its ratio to
  ``direct`` is the ceiling of any proxy that joins two TCP connections, which
  the throughput targets state next to the openshell number.
"""

from __future__ import annotations

from openshell_bench import env
from openshell_bench.context import Context
from openshell_bench.peers import Peer
from openshell_bench.results import FigureResult, Skip, Target, percentile

MIB = 1 << 20
REFERENCE = "splice-ref"


def _subjects(ctx: Context):
    """Yield ``(subject, runner)``; ``runner(mode, *args) -> dict`` runs the load client."""
    up = ctx.upstream()
    yield "direct", lambda mode, *a: env.host_client(mode, "-", up.ip, env.UPSTREAM_PORT, *a)
    gw, box = ctx.gateway(), ctx.net_sandbox()
    yield "openshell", lambda mode, *a: env.sandbox_client(gw, box, mode, up.ip, env.UPSTREAM_PORT, *a)
    for name in ctx.peers:
        try:
            peer = Peer(name)
        except Skip as exc:
            yield name, exc
            continue
        try:
            yield name, lambda mode, *a, p=peer: env.host_client(mode, p.address, up.ip, env.UPSTREAM_PORT, *a)
        finally:
            peer.close()


def throughput(ctx: Context) -> FigureResult:
    """Figure 1: MiB/s through one tunnel and through N parallel tunnels."""
    s = ctx.sizes
    fig = FigureResult("CONNECT tunnel bulk throughput (download from the test host)")
    one = f"1 tunnel, {s.bulk_one // MIB} MiB"
    many = f"{s.tunnels} tunnels, {s.bulk_many // MIB} MiB total"
    for subject, run in _subjects(ctx):
        if isinstance(run, Exception):
            fig.skip_row(subject, one, "MiB/s", str(run))
            continue
        for metric, total, streams in ((one, s.bulk_one, 1), (many, s.bulk_many, s.tunnels)):
            try:
                out = run("bulk", total, streams)
            except (RuntimeError, OSError) as exc:
                fig.skip_row(subject, metric, "MiB/s", str(exc)[:200])
                continue
            note = "" if out["bytes"] == out["expected"] else f"short: {out['bytes']} of {out['expected']} bytes {out['errors'][:1]}"
            fig.add(subject, metric, out["bytes"] / MIB / out["seconds"], "MiB/s", note=note)
    fig.relate("direct")
    for metric in (one, many):
        row, ref = (next((r for r in fig.rows if r.subject == subject and r.metric == metric and r.ratio), None) for subject in ("openshell", REFERENCE))
        value = f"{row.ratio * 100:.0f} %" if row else "n/a"
        if ref:
            value += f" ({REFERENCE}, the two-connection ceiling: {ref.ratio * 100:.0f} %)"
        fig.targets.append(
            Target(
                f"raw tunnel throughput ({metric})",
                "≥ 80 % of direct",
                value,
                (row.ratio >= 0.8) if row else None,
            )
        )
    return fig


def setup_latency(ctx: Context) -> FigureResult:
    """Figure 2: time to a complete tiny answer over a fresh connection, p50/p99, 1 and N clients."""
    s = ctx.sizes
    fig = FigureResult("connection setup: connect + CONNECT + decision + dial + tiny GET (fresh connection each)")
    loads = ((1, s.setup_single), (s.setup_clients, s.setup_per_client))
    p50s: dict[tuple[str, int], float] = {}
    for subject, run in _subjects(ctx):
        if isinstance(run, Exception):
            fig.skip_row(subject, "p50 1 client", "ms", str(run))
            continue
        for clients, per in loads:
            try:
                out = run("setup", clients, per)
            except (RuntimeError, OSError) as exc:
                fig.skip_row(subject, f"p50 {clients} clients", "ms", str(exc)[:200])
                continue
            samples = out["samples_ms"]
            note = f"{out['errors']} errors {out['first_errors'][:1]}" if out["errors"] else ""
            if not samples:
                fig.skip_row(subject, f"p50 {clients} clients", "ms", note or "no samples")
                continue
            label = "1 client" if clients == 1 else f"{clients} clients"
            p50, p99 = percentile(samples, 50), percentile(samples, 99)
            p50s[(subject, clients)] = p50
            fig.add(subject, f"p50 {label}", p50, "ms", note=note)
            fig.add(subject, f"p99 {label}", p99, "ms")
    fig.relate("direct")
    for (subject, clients), p50 in list(p50s.items()):
        base = p50s.get(("direct", clients))
        if subject != "direct" and base is not None:
            label = "1 client" if clients == 1 else f"{clients} clients"
            fig.add(subject, f"added p50 {label}", p50 - base, "ms", baseline="direct")
    added = next((r for r in fig.rows if r.subject == "openshell" and r.metric == "added p50 1 client"), None)
    fig.targets.append(
        Target(
            "added CONNECT latency p50 (1 client)",
            "≤ 1 ms",
            f"{added.value:.2f} ms" if added else "n/a",
            (added.value <= 1.0) if added else None,
        )
    )
    return fig
