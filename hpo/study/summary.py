"""A study at a glance: trials by state, the budgets, the best trial (or the Pareto front)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hpo.keys import ATTR_BUDGET
from hpo.study._optuna import FAILED_TRIAL, backend_of, storage_of, study_id_of
from hpo.study.claims.budget import is_warm
from hpo.study.claims.epochs import EpochCount, epoch_count
from hpo.study.search.ranking import pareto_front
from hpo.study.search.warm import history_count

#: Budget slots' states, in the order every count is shown (live header, run summary, status).
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def slot_line(slots: dict[str, int], budget: int | None, retries: int = 0, sep: str = "  ") -> str:
    """``complete 4  pruned 0  fail 0  running 0  waiting 0  (1 retry)``: budget slots by
    state, the one count the live header, ``hpo run``'s summary and ``hpo status`` show. With
    a trial budget, ``waiting`` is every slot not started yet (queued or not yet created), so
    the counts add up to the budget; a retried failure counts once, as its retry."""
    shown = dict(slots)
    if budget is not None:
        started = sum(shown.get(s, 0) for s in STATES[:4])
        shown["WAITING"] = max(shown.get("WAITING", 0), budget - started)
    line = sep.join(f"{s.lower()} {shown.get(s, 0)}" for s in STATES)
    if retries:
        line += f"{sep}({retries} {'retry' if retries == 1 else 'retries'})"
    return line


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
    #: Warm-start history (an earlier study's results): in the storage, not in ``counts``.
    warm: int = 0
    #: The study's trial budget (None: no trial limit, 0: unknown, as a study hpo never ran).
    budget: int | None = 0

    @property
    def slots(self) -> dict[str, int]:
        """Budget slots by state: each retry replaced one failed trial, which is no slot."""
        slots = dict(self.counts)
        slots["FAIL"] = max(0, slots.get("FAIL", 0) - self.retries)
        return slots

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
    the Pareto front: the trials no other trial beats on every metric). Warm-start history is
    left out of both: it is an earlier study's result, not this one's."""
    storage = storage_of(study)
    counts = {s.name: storage.get_n_trials(study_id_of(study), state=s) for s in TrialState}
    attrs = storage.get_study_system_attrs(study_id_of(study))
    warm = history_count(attrs)
    budget = attrs.get(ATTR_BUDGET, 0)
    counts["COMPLETE"] = max(0, counts["COMPLETE"] - warm)  # history is all COMPLETE
    retries, epochs = _retries(study), epoch_count(study)
    common: dict[str, Any] = {
        "retries": retries,
        "warm": warm,
        "epochs": epochs,
        "budget": None if budget is None else int(budget),
    }
    if len(study.directions) > 1:
        front = own_front(study, warm)
        found = tuple((t.number, tuple(t.values), dict(t.params)) for t in front)
        return Snapshot(counts, front=found, **common)
    best = own_best(study, warm)
    if best is None:  # no completed trial yet
        return Snapshot(counts, **common)
    return Snapshot(counts, best.value, dict(best.params), best.number, **common)


def _warm(study: optuna.Study, warm: int | None) -> int:
    if warm is None:
        return history_count(storage_of(study).get_study_system_attrs(study_id_of(study)))
    return warm


def _own_complete(study: optuna.Study) -> list[FrozenTrial]:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [t for t in done if not is_warm(t)]


def own_best(study: optuna.Study, warm: int | None = None) -> FrozenTrial | None:
    """The best of the study's own completed trials (one metric), None before one completes.

    Optuna's ``study.best_trial`` where the study has no warm-start history (``warm``: how
    many history trials it has, read from the study when None); otherwise the history is
    left out, at the cost of reading every completed trial.
    """
    if not _warm(study, warm):
        try:
            return study.best_trial
        except ValueError:
            return None
    own = _own_complete(study)
    if not own:
        return None
    sign = 1.0 if study.direction.name == "MAXIMIZE" else -1.0
    return max(own, key=lambda t: (sign * float(t.value or 0.0), -t.number))


def own_front(study: optuna.Study, warm: int | None = None) -> list[FrozenTrial]:
    """The Pareto front of the study's own completed trials, by number (as :func:`own_best`:
    Optuna's ``study.best_trials`` without warm-start history)."""
    if not _warm(study, warm):
        return sorted(study.best_trials, key=lambda t: t.number)
    own = _own_complete(study)
    maximize = [d.name == "MAXIMIZE" for d in study.directions]
    return [own[i] for i in pareto_front([t.values for t in own], maximize)]


def _retries(study: optuna.Study) -> int:
    """How many trials are retries (system attr ``failed_trial``): one query where the storage
    has one (hpo's database storage), a read of the trials otherwise."""
    backend = backend_of(storage_of(study))
    like = getattr(backend, "system_attrs_like", None)
    if like is None:  # Optuna's own storage (plain paths); behind a gRPC proxy: not counted
        if not isinstance(backend, RDBStorage):
            return 0
        return sum(FAILED_TRIAL in t.system_attrs for t in study.get_trials(deepcopy=False))
    return len(like(study_id_of(study), FAILED_TRIAL, 0, []))


def slot_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Budget slots by state: a slot is in the state of its latest trial, so a failed trial
    that was retried counts once, as its retry (``retry_history`` lists what it replaced)."""
    replaced = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    counts: dict[str, int] = {}
    for t in trials:
        if t.number not in replaced and not is_warm(t):  # warm-start history takes no slot
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts
