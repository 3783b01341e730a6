"""A fast synthetic trial for the scale benchmark: 5 reports, each timed, no training.

Each report (``trial.report`` + ``should_prune``: storage round trips) is timed and appended
to ``$HPO_BENCH_LATENCY_DIR/<pid>.txt`` so the benchmark can compute p50/p99 over all workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

#: Seconds between two reports (not timed): trials that last, so that a fleet's workers are
#: all up at once on a small machine (benchmarks/scale.py --fleet --report-sleep).
SLEEP = float(os.environ.get("HPO_BENCH_REPORT_SLEEP", "0"))


def objective(params: dict[str, Any], report: Callable[[float, int], None]) -> float:
    out = os.environ.get("HPO_BENCH_LATENCY_DIR")
    lines = []
    for step in range(1, 6):
        time.sleep(SLEEP)
        t0 = time.perf_counter()
        report(params["x"] / step, step)
        lines.append(f"{(time.perf_counter() - t0) * 1000:.3f}\n")
    if out:
        with open(os.path.join(out, f"{os.getpid()}.txt"), "a") as fh:
            fh.writelines(lines)
    return float(params["x"])
