"""The lifecycle figure's ``kubernetes`` driver rows (only with ``OPENSHELL_BENCH_K8S_GATEWAY``).

``OPENSHELL_BENCH_K8S_GATEWAY=NAME`` names a configured gateway (``openshell
gateway add NAME ... --from-secret ...``, README "Kubernetes") that runs in a
cluster with the ``kubernetes`` driver: the harness installs nothing there.
One unmeasured warm-up create (the node's first pod of the images), then
``runs`` sequential create-to-READY / delete through the SDK, as the local
rows do: READY is when the gateway says so (the supervisor in the pod
reported it), delete when the gateway answers.
"""

from __future__ import annotations

import os
import time
import uuid

from openshell_bench.results import FigureResult, percentile

ENV_GATEWAY = "OPENSHELL_BENCH_K8S_GATEWAY"
SUBJECT = "openshell kubernetes"


def k8s_driver_rows(fig: FigureResult, runs: int) -> None:
    """Add the kubernetes driver's create-to-READY and delete rows, or a skipped row saying why."""
    name = os.environ.get(ENV_GATEWAY, "")
    if not name:
        fig.skip_row(SUBJECT, "create-to-READY p50", "ms", f"not asked: set {ENV_GATEWAY}=NAME, a gateway in a cluster (README, 'Kubernetes')")
        return
    from openshell.client.config import GatewayConfigError, load_gateway_config
    from openshell.client.sdk import OpenShellClient

    try:
        cfg = load_gateway_config(name)
    except GatewayConfigError as exc:
        fig.skip_row(SUBJECT, "create-to-READY p50", "ms", f"{ENV_GATEWAY}={name}: {exc}")
        return
    client = OpenShellClient(cfg.endpoint, cfg.ca_path, cfg.cert_path, cfg.key_path, gateway_name=name, timeout=120)
    prefix = f"bench-k8s-{uuid.uuid4().hex[:5]}"
    creates: list[float] = []
    deletes: list[float] = []

    def once(sandbox: str, timeout: float) -> tuple[float, float]:
        t0 = time.perf_counter()
        client.create_sandbox(name=sandbox)
        client.wait_ready(sandbox, timeout=timeout)
        t1 = time.perf_counter()
        client.delete_sandbox(sandbox, allow_missing=True)
        return (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000

    try:
        once(f"{prefix}-warm", 600)
        for i in range(runs):
            ready, gone = once(f"{prefix}-{i}", 300)
            creates.append(ready)
            deletes.append(gone)
    except Exception as exc:  # noqa: BLE001 - a row that says why, never a crashed figure
        fig.skip_row(SUBJECT, "create-to-READY p50", "ms", f"kubernetes run failed: {str(exc)[-300:]}")
        return
    finally:
        for i in range(runs):
            try:
                client.delete_sandbox(f"{prefix}-{i}", allow_missing=True)
            except Exception:  # noqa: BLE001 - best effort
                pass
        client.close()
    note = f"gateway {name} ({cfg.endpoint}), {runs} sandboxes one at a time, default image and policy"
    fig.add(SUBJECT, "create-to-READY p50", percentile(creates, 50), "ms", note=note)
    fig.add(SUBJECT, "create-to-READY p99", percentile(creates, 99), "ms")
    fig.add(SUBJECT, "delete p50", percentile(deletes, 50), "ms")
    fig.add(SUBJECT, "delete p99", percentile(deletes, 99), "ms")
