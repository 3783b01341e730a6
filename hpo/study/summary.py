"""A study at a glance: trials by state, the budgets, the best trial (or the Pareto front)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.study.epochs import EpochCount, epoch_count


@dataclass(frozen=True)
class Snapshot:
    """Counts by state and the best trial, read from the storage in a few queries."""

    counts: dict[str, int] = field(default_factory=dict)
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_number: int | None = None
    #: A multi-objective study's Pareto front: (trial number, values, params), by number.
    front: tuple[tuple[int, tuple[float, ...], dict[str, Any]], ...] = ()
    #: Trials that re-run a failed one: each replaced a FAIL row in its budget slot.
    retries: int = 0
    #: Epochs trained over the study and its epoch budget; None without one.
    epochs: EpochCount | None = None

    @property
    def finished(self) -> int:
        """Finished trials (rows), retried ones included."""
        return sum(self.counts.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL"))

    @property
    def finished_slots(self) -> int:
        """Finished budget slots: a failed trial that was retried is not one of them."""
        return self.finished - self.retries

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def snapshot(study: optuna.Study) -> Snapshot:
    """Read the study's counts per state and its best completed trial (for several metrics,
    the Pareto front: the trials no other trial beats on every metric)."""
    storage = study._storage
    counts = {s.name: storage.get_n_trials(study._study_id, state=s) for s in TrialState}
    retries, epochs = _retries(study), epoch_count(study)
    if len(study.directions) > 1:
        front = sorted(study.best_trials, key=lambda t: t.number)
        found = tuple((t.number, tuple(t.values), dict(t.params)) for t in front)
        return Snapshot(counts, front=found, retries=retries, epochs=epochs)
    try:
        best = study.best_trial
    except ValueError:  # no completed trial yet
        return Snapshot(counts, retries=retries, epochs=epochs)
    return Snapshot(
        counts, best.value, dict(best.params), best.number, retries=retries, epochs=epochs
    )


def _retries(study: optuna.Study) -> int:
    """How many trials are retries (system attr ``failed_trial``), in one query where the
    storage has one (hpo's database storage); 0 behind a gRPC proxy."""
    # Optuna wraps the database storage in its _CachedStorage (``_backend``).
    backend = getattr(study._storage, "_backend", study._storage)
    like = getattr(backend, "system_attrs_like", None)
    if like is None:
        return 0
    return len(like(study._study_id, "failed_trial", 0, []))


def slot_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Budget slots by state: a slot is in the state of its latest trial, so a failed trial
    that was retried counts once, as its retry (``retry_history`` lists what it replaced)."""
    replaced = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    counts: dict[str, int] = {}
    for t in trials:
        if t.number not in replaced:
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts
