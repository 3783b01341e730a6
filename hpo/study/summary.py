"""A study at a glance: trials by state, the budget, the best trial."""

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

    @property
    def finished(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL"))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def snapshot(study: optuna.Study) -> Snapshot:
    """Read the study's counts per state and its best completed trial."""
    storage = study._storage
    counts = {s.name: storage.get_n_trials(study._study_id, state=s) for s in TrialState}
    try:
        best = study.best_trial
    except ValueError:  # no completed trial yet
        return Snapshot(counts)
    return Snapshot(counts, best.value, dict(best.params), best.number)
