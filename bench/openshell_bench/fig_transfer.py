"""Upload/download throughput of ``openshell sandbox upload|download``.

That measurement lives in ``bench/transfer.py``, owned by the file-transfer
work. When the file exists and offers ``run(quick: bool) -> dict`` returning
``{"rows": [{"subject", "metric", "value", "unit", ...}], ...}``, its rows are
folded into this figure; until then the figure is skipped with the reason.
"""

from __future__ import annotations

import importlib.util

from openshell_bench import env
from openshell_bench.context import Context
from openshell_bench.results import FigureResult, Row, Skip

TRANSFER = env.BENCH / "transfer.py"


def transfer(ctx: Context) -> FigureResult:
    """Run ``bench/transfer.py``'s ``run`` and convert its rows."""
    if not TRANSFER.exists():
        raise Skip("bench/transfer.py (upload/download throughput) is not in this tree yet")
    spec = importlib.util.spec_from_file_location("openshell_bench_transfer", TRANSFER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "run"):
        raise Skip("bench/transfer.py has no run(quick) function to call")
    out = module.run(quick=ctx.sizes.bulk_one < (1 << 30))
    fig = FigureResult(str(out.get("title", "sandbox upload/download throughput")))
    fields = set(Row.__dataclass_fields__)
    for row in out.get("rows", []):
        fig.rows.append(Row(**{k: v for k, v in row.items() if k in fields}))
    return fig
