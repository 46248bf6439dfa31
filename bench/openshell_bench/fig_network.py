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
        # issue 17: against the ceiling of any relay of two TCP connections, measured in the same run
        of_ref = (row.ratio / ref.ratio) if row and ref else None
        fig.targets.append(
            Target(
                f"raw tunnel throughput vs {REFERENCE} ({metric})",
                f"≥ 95 % of {REFERENCE} (issue 17)",
                f"{of_ref * 100:.0f} %" if of_ref is not None else f"n/a ({REFERENCE} not measured)",
                (of_ref >= 0.95) if of_ref is not None else None,
            )
        )
    return fig


C_PEERS = ("tinyproxy", "squid")  # the targets at 100 clients compare with the best of these
ADDED_1_CLIENT_MS = 0.5  # goal for the added p50 and p99 at 1 client


def _attribution_note(probe: dict | None) -> str:
    if probe is None:
        return "connect attribution NOT seen (no seccomp listener above the client)"
    return f"attribution on: client under seccomp (mode {probe['seccomp']}), its supervisor serves {probe['listeners']} seccomp user-notification listener(s)"


def setup_latency(ctx: Context) -> FigureResult:
    """Figure 2: time to a complete tiny answer over a fresh connection, p50/p99, 1 and N clients.

    For ``openshell`` the run is watched (``env.AttributionProbe``): the note says
    whether the client ran under the sandbox's seccomp filter with its supervisor
    serving user notifications (connect attribution on), and without that the
    targets are not judged.
    """
    s = ctx.sizes
    fig = FigureResult("connection setup: connect + CONNECT + decision + dial + tiny GET (fresh connection each)")
    loads = ((1, s.setup_single), (s.setup_clients, s.setup_per_client))
    pcts: dict[tuple[str, int, int], float] = {}  # (subject, clients, 50|99) -> ms
    attribution_seen = True
    for subject, run in _subjects(ctx):
        if isinstance(run, Exception):
            fig.skip_row(subject, "p50 1 client", "ms", str(run))
            continue
        for clients, per in loads:
            probe = env.AttributionProbe("setup") if subject == "openshell" else None
            try:
                out = run("setup", clients, per)
            except (RuntimeError, OSError) as exc:
                fig.skip_row(subject, f"p50 {clients} clients", "ms", str(exc)[:200])
                continue
            finally:
                seen = probe.close() if probe is not None else None
            samples = out["samples_ms"]
            notes = [f"{out['errors']} errors {out['first_errors'][:1]}"] if out["errors"] else []
            if probe is not None:
                attribution_seen = attribution_seen and seen is not None
                notes.append(_attribution_note(seen))
            note = "; ".join(notes)
            if not samples:
                fig.skip_row(subject, f"p50 {clients} clients", "ms", note or "no samples")
                continue
            label = "1 client" if clients == 1 else f"{clients} clients"
            for q in (50, 99):
                pcts[(subject, clients, q)] = percentile(samples, q)
            fig.add(subject, f"p50 {label}", pcts[(subject, clients, 50)], "ms", note=note)
            fig.add(subject, f"p99 {label}", pcts[(subject, clients, 99)], "ms")
    fig.relate("direct")
    added: dict[tuple[str, int, int], float] = {}
    for (subject, clients, q), value in list(pcts.items()):
        base = pcts.get(("direct", clients, q))
        if subject != "direct" and base is not None:
            label = "1 client" if clients == 1 else f"{clients} clients"
            added[(subject, clients, q)] = value - base
            fig.add(subject, f"added p{q} {label}", value - base, "ms", baseline="direct")
    judged = attribution_seen or None  # without attribution the number is not the product's
    for q in (50, 99):
        mine = added.get(("openshell", 1, q))
        fig.targets.append(
            Target(
                f"added CONNECT latency p{q} (1 client)",
                f"≤ {ADDED_1_CLIENT_MS} ms",
                f"{mine:.2f} ms" if mine is not None else "n/a",
                (mine <= ADDED_1_CLIENT_MS) if mine is not None and judged else None,
            )
        )
    many = s.setup_clients
    for q in (50, 99):
        mine = added.get(("openshell", many, q))
        peers = {p: added[(p, many, q)] for p in C_PEERS if (p, many, q) in added}
        best = min(peers.items(), key=lambda kv: kv[1]) if peers else None
        value = f"{mine:.1f} ms" if mine is not None else "n/a"
        if best is not None:
            value += f" (best C peer {best[0]}: {best[1]:.1f} ms)"
        met = (mine <= best[1]) if mine is not None and best is not None and judged else None
        fig.targets.append(Target(f"added CONNECT latency p{q} ({many} clients)", "≤ the best C peer's (tinyproxy, squid) in the same run", value, met))
    return fig
