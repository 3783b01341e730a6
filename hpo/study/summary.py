"""A study at a glance: trials by state, the budget, the best trial (or the Pareto front)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState


@dataclass(frozen=True)
class Snapshot:
    """Counts by state and the best trial, read from the storage in a few queries."""

    counts: dict[str, int] = field(default_factory=dict)
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_number: int | None = None
    #: A multi-objective study's Pareto front: (trial number, values, params), by number.
    front: tuple[tuple[int, tuple[float, ...], dict[str, Any]], ...] = ()

    @property
    def finished(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL"))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def snapshot(study: optuna.Study) -> Snapshot:
    """Read the study's counts per state and its best completed trial (for several metrics,
    the Pareto front: the trials no other trial beats on every metric)."""
    storage = study._storage
    counts = {s.name: storage.get_n_trials(study._study_id, state=s) for s in TrialState}
    if len(study.directions) > 1:
        front = sorted(study.best_trials, key=lambda t: t.number)
        return Snapshot(
            counts, front=tuple((t.number, tuple(t.values), dict(t.params)) for t in front)
        )
    try:
        best = study.best_trial
    except ValueError:  # no completed trial yet
        return Snapshot(counts)
    return Snapshot(counts, best.value, dict(best.params), best.number)
