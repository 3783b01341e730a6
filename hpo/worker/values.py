"""A trial's value(s): one float, or one per metric of a multi-objective study, in order."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from hpo.errors import TrialError
from hpo.spec import StudySpec

#: What ``study.tell`` receives for a completed trial.
Value = float | list[float]


def as_values(result: Any, spec: StudySpec) -> list[float]:
    """``result`` as one float per metric of ``spec``, in the spec's order.

    Accepts a number (one metric), a list or tuple (one value per metric, in order), or a
    mapping from metric name to value (extra keys ignored).

    Raises:
        TrialError: the result does not give exactly the study's metrics.
    """
    names = [m.name for m in spec.metrics]
    if isinstance(result, Mapping):
        missing = [n for n in names if n not in result]
        if missing:
            raise TrialError("error", f"the objective's result has no {missing[0]!r}")
        values = [result[n] for n in names]
    elif isinstance(result, Sequence) and not isinstance(result, str):
        values = list(result)
    else:
        values = [result]
    if len(values) != len(names):
        raise TrialError(
            "error",
            f"the objective returned {len(values)} value(s) for {len(names)} metric(s) "
            f"({', '.join(names)})",
        )
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise TrialError("error", f"the objective returned a non-number: {values!r}") from None


def pick_epoch(firsts: list[float], spec: StudySpec) -> int:
    """Index of the epoch whose values become the trial's: the last, or (``objective_value:
    best``) the best of the first metric (NaN never best)."""
    if spec.objective_value == "last" or not firsts:
        return len(firsts) - 1
    sign = 1.0 if spec.metrics[0].direction == "maximize" else -1.0
    scored = [(sign * v if not math.isnan(v) else -math.inf, i) for i, v in enumerate(firsts)]
    return max(scored, key=lambda s: (s[0], -s[1]))[1]


def as_told(values: list[float], spec: StudySpec) -> Value:
    """What ``study.tell`` gets: a float for one metric, the list for several."""
    return values if spec.multi_objective else values[0]
