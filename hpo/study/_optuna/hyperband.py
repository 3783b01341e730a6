"""Hyperband with Optuna's decisions, at a cost that does not grow with the study.

Optuna's ``HyperbandPruner`` builds a bracket study on every ``should_prune`` (a study-name
query), and at each rung reads every trial of the study, computes every trial's bracket (a
crc32 each) and collects every rung value: O(study size) in Python per rung check. This
subclass makes the same decisions from the same data: the rung values of finished trials,
which never change, are kept in one sorted list per (bracket, rung) and updated from the trials
that finished since the last check (``TrialCache.finished_log``); the values of all other
trials are read fresh, as Optuna does, in one query. It writes the same ``completed_rung_N``
system attrs, so a plain Optuna process in the same study prunes alike. Without a
``TrialCache`` (gRPC proxy, in-memory study) or before ``min_resource`` is known, it is
Optuna's pruner unchanged.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import cast

import optuna
from optuna.pruners import HyperbandPruner, SuccessiveHalvingPruner
from optuna.pruners._successive_halving import _completed_rung_key, _get_current_rung
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from hpo.study._optuna.objects import storage_of, study_id_of, trial_id_of
from hpo.study._optuna.trial_cache import TrialCache

_RUNG = "completed_rung_"


@dataclass
class _Rungs:
    """Rung values of one study's finished trials, per (bracket, rung key), sorted."""

    study_id: int
    cursor: int = 0
    values: dict[tuple[int, str], list[float]] = field(default_factory=dict)


class FastHyperbandPruner(HyperbandPruner):
    """``optuna.pruners.HyperbandPruner`` that reads each finished trial once."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._brackets: dict[tuple[str, int], int] = {}
        self._rungs: _Rungs | None = None

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        storage = storage_of(study)
        if not isinstance(storage, TrialCache):
            return super().prune(study, trial)
        if len(self._pruners) == 0:
            self._try_initialization(study)
            if len(self._pruners) == 0:
                return False
        bracket = self._bracket(study, trial.number)
        halving = self._pruners[bracket]
        if halving._min_resource is None:  # "auto": estimated once from the trials, by Optuna
            return super().prune(study, trial)
        return self._halve(study, storage, trial, bracket, halving)

    def _bracket(self, study: optuna.Study, number: int) -> int:
        """Optuna's ``_get_bracket_id`` (a crc32 of study name and trial number), remembered:
        it reads nothing of the trial but its number, which the rung query returns alone."""
        key = (study.study_name, number)
        bracket = self._brackets.get(key)
        if bracket is None:
            trial = cast(FrozenTrial, SimpleNamespace(number=number))
            bracket = self._brackets[key] = self._get_bracket_id(study, trial)
        return bracket

    def _halve(
        self,
        study: optuna.Study,
        storage: TrialCache,
        trial: FrozenTrial,
        bracket: int,
        halving: SuccessiveHalvingPruner,
    ) -> bool:
        """SuccessiveHalvingPruner.prune, step for step, with the competitors from the index."""
        step = trial.last_step
        if step is None:
            return False
        rung = _get_current_rung(trial)
        value = trial.intermediate_values[step]
        others: dict[str, list[float]] | None = None
        assert halving._min_resource is not None
        while True:
            promotion_step = halving._min_resource * (
                halving._reduction_factor ** (halving._min_early_stopping_rate + rung)
            )
            if step < promotion_step:
                return False
            if math.isnan(value):
                return True
            if others is None:  # read before this trial's own rung value is written, as Optuna
                others = self._unfinished_rung_values(study, storage, trial, bracket)
            rung_key = _completed_rung_key(rung)
            storage.set_trial_system_attr(trial_id_of(trial), rung_key, value)
            assert self._rungs is not None
            finished = self._rungs.values.get((bracket, rung_key), [])
            extra = [*others.get(rung_key, []), value]
            if len(finished) + len(extra) <= halving._bootstrap_count:
                return True
            if not _promotable(value, finished, extra, halving._reduction_factor, study.direction):
                return True
            rung += 1

    def _unfinished_rung_values(
        self, study: optuna.Study, storage: TrialCache, trial: FrozenTrial, bracket: int
    ) -> dict[str, list[float]]:
        """Index the trials that finished since the last look, then read (one query) the rung
        values of the bracket's other trials that are not in the finished log: unfinished ones,
        whose values can still change, and any that finished since the study was last read."""
        study_id = study_id_of(study)
        self._index(study, storage.finished_log(study_id))
        values: dict[str, list[float]] = {}
        for trial_id, number, key, v in storage.unlogged_system_attrs(study_id, _RUNG + "%"):
            if trial_id == trial_id_of(trial) or self._bracket(study, number) != bracket:
                continue
            values.setdefault(key, []).append(v)
        return values

    def _index(self, study: optuna.Study, log: list[FrozenTrial]) -> None:
        if self._rungs is None or self._rungs.study_id != study_id_of(study):
            self._rungs = _Rungs(study_id_of(study))
        rungs = self._rungs
        for finished in log[rungs.cursor :]:
            bracket = self._bracket(study, finished.number)
            for key, v in finished.system_attrs.items():
                if key.startswith(_RUNG):
                    bisect.insort(rungs.values.setdefault((bracket, key), []), v)
        rungs.cursor = len(log)


def _promotable(
    value: float,
    finished: list[float],
    extra: list[float],
    reduction_factor: int,
    direction: StudyDirection,
) -> bool:
    """Optuna's ``_is_trial_promotable_to_next_rung`` over ``finished`` (sorted) + ``extra``
    (which holds ``value``), without merging them: the trial is promoted when at most
    ``promotable_idx`` competitors are strictly better than it."""
    promotable_idx = max((len(finished) + len(extra)) // reduction_factor - 1, 0)
    if direction == StudyDirection.MAXIMIZE:
        better = len(finished) - bisect.bisect_right(finished, value)
        better += sum(1 for v in extra if v > value)
    else:
        better = bisect.bisect_left(finished, value) + sum(1 for v in extra if v < value)
    return better <= promotable_idx


class FastAshaPruner(FastHyperbandPruner):
    """Asynchronous successive halving (ASHA) with the same fast path: Hyperband's most
    aggressive bracket alone, which is Optuna's ``SuccessiveHalvingPruner(min_resource,
    reduction_factor)`` decision for decision. A later first rung (``min_early_stopping_rate``)
    is the same rungs from ``min_resource * reduction_factor ** rate``."""

    def __init__(
        self, min_resource: int, max_resource: int, reduction_factor: int, rate: int = 0
    ) -> None:
        super().__init__(
            min_resource=min_resource * reduction_factor**rate,
            max_resource=max_resource,
            reduction_factor=reduction_factor,
        )
        self._n_brackets = 1
