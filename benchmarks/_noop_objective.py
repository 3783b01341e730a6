"""A no-op objective for the overhead benchmarks: reports ``EPOCHS`` values, trains nothing."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

EPOCHS = int(os.environ.get("HPO_BENCH_EPOCHS", "10"))


def curve(x: float, step: int) -> float:
    """A learning curve that rises with the step and peaks at x = 0.3."""
    return 1.0 - (x - 0.3) ** 2 - 1.0 / (step + 1)


def objective(params: dict[str, Any], report: Callable[[float, int], None]) -> float:
    for step in range(1, EPOCHS + 1):
        report(curve(params["x"], step), step)
    return curve(params["x"], EPOCHS)
