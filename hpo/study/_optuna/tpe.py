"""Optuna's TPE with per-suggestion work that does not grow with the study.

``TPESampler._sample`` re-derives everything from every trial on each suggestion: it scores and
sorts all complete and pruned trials and converts every trial's parameters to their internal
representation, in Python, so a suggestion costs more as the study grows (BENCHMARKS.md).
Finished trials never change, so ``FastTPESampler`` derives that data once per trial, from the
finished-trial log of ``trial_cache.TrialCache`` (``finished_log``), and keeps it sorted and in
numpy arrays. The
suggestions are the same as Optuna's, bit for bit: the same trials split into the same below and
above sets, the same observation arrays, and Optuna's own Parzen estimator and random state.

Where the fast path cannot promise that (another storage, several objectives, constraints, a
parameter value the distribution rejects, threads reading older snapshots), it calls Optuna.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import TPESampler
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
from optuna.samplers._tpe.sampler import _get_pruned_trial_score, default_gamma
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpo.study._optuna.objects import is_multi_objective, storage_of, study_id_of, trials
from hpo.study._optuna.trial_cache import TrialCache, finished_log

_CONSIDERED = (TrialState.COMPLETE, TrialState.PRUNED)
_KNOWN = (FloatDistribution, IntDistribution, CategoricalDistribution)
_Observations = dict[str, np.ndarray]


def _grow(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with room for at least ``size`` entries (zero-filled, doubling)."""
    if len(array) >= size:
        return array
    grown = np.zeros(max(size, 2 * len(array)), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def _merge(keys: list[Any], new: list[Any]) -> None:
    """Add ``new`` to the sorted ``keys`` (unique keys, so the result is the same either way)."""
    if len(new) > 32:
        keys.extend(new)
        keys.sort()
    else:
        for key in new:
            bisect.insort(keys, key)


def _as_observed(values: np.ndarray) -> np.ndarray:
    """What Optuna's ``np.asarray(list)`` gives for these values (an empty list is float64)."""
    return values if values.size else np.asarray([])


class _Column:
    """One parameter's internal values by trial number, for the complete and pruned trials.

    ``has`` is Optuna's inclusion test (the name is among the trial's params); ``bad`` marks a
    value ``to_internal_repr`` rejects, where Optuna would raise, so the caller falls back.
    """

    def __init__(self, dist: BaseDistribution) -> None:
        self.dist = dist
        # Optuna's arrays come from Python ints (categorical indices) or floats.
        dtype = np.int_ if isinstance(dist, CategoricalDistribution) else np.float64
        self.values = np.zeros(0, dtype=dtype)
        self.has = np.zeros(0, dtype=bool)
        self.bad = np.zeros(0, dtype=bool)
        self.cursor = 0  # into _StudyCache.trials

    def update(self, name: str, trials: list[FrozenTrial], size: int) -> None:
        """Read the trials added since the last update; make room for ``size`` numbers."""
        self.values = _grow(self.values, size)
        self.has, self.bad = _grow(self.has, size), _grow(self.bad, size)
        for trial in trials[self.cursor :]:
            if name in trial.params:
                self.has[trial.number] = True
                try:
                    self.values[trial.number] = self.dist.to_internal_repr(trial.params[name])
                except (ValueError, TypeError):
                    self.bad[trial.number] = True
        self.cursor = len(trials)


class _StudyCache:
    """What one study's finished trials contribute to TPE, read once each from the log."""

    def __init__(self, log: list[FrozenTrial], minimize: bool) -> None:
        self.log = log  # TrialCache's append-only log: identifies the (storage, study)
        self.minimize = minimize
        self.cursor = 0  # log entries read
        self.considered_before = [0]  # complete + pruned trials among log[:i]
        self.trials: list[FrozenTrial] = []  # complete + pruned, in log order
        self.complete: list[tuple[float, int]] = []  # (value, lower is better; number)
        self.pruned: list[tuple[tuple[float, float], int]] = []  # (Optuna's score, number)
        self.considered = np.zeros(0, dtype=bool)  # by trial number
        self.constrained = False
        self.columns: dict[tuple[str, BaseDistribution], _Column] = {}

    def advance(self, study: Study, end: int) -> None:
        """Read ``log[cursor:end]``: each finished trial is scored and sorted in exactly once."""
        complete: list[tuple[float, int]] = []
        pruned: list[tuple[tuple[float, float], int]] = []
        for trial in self.log[self.cursor : end]:
            considered = trial.state in _CONSIDERED
            self.considered_before.append(self.considered_before[-1] + considered)
            if not considered:
                continue
            self.constrained = self.constrained or bool(trial.constraints)
            if trial.state == TrialState.COMPLETE:
                value = trial.values[0]
                complete.append((value if self.minimize else -value, trial.number))
            else:
                pruned.append((_get_pruned_trial_score(trial, study), trial.number))
            self.trials.append(trial)
        _merge(self.complete, complete)
        _merge(self.pruned, pruned)
        numbers = [number for _, number in complete + pruned]
        if numbers:
            self.considered = _grow(self.considered, max(numbers) + 1)
            self.considered[numbers] = True
        self.cursor = max(self.cursor, end)

    def below(self, n_below: int) -> list[int]:
        """Numbers of the below trials, as ``_split_trials`` picks them (no infeasible ones).

        Sorting by (key, number) is Python's stable sort of trials in number order, and
        ``reverse=True`` keeps ties in that order too, hence ``-value`` for maximize.
        """
        below_complete = self.complete[: min(n_below, len(self.complete))]
        n_below = max(0, n_below - len(below_complete))
        below_pruned = self.pruned[: min(n_below, len(self.pruned))]
        return sorted(number for _, number in below_complete + below_pruned)

    def column(self, name: str, dist: BaseDistribution) -> _Column:
        """The up-to-date column of ``name`` under ``dist``."""
        col = self.columns.get((name, dist))
        if col is None:
            col = self.columns[(name, dist)] = _Column(dist)
        col.update(name, self.trials, len(self.considered))
        return col


def _snapshot_end(study: Study, log: list[FrozenTrial]) -> int | None:
    """How much of ``log`` the study's per-trial snapshot (``use_cache=True``) holds.

    The snapshot lists every trial by number and shares the log's finished trial objects, and
    the log only grows, so the snapshot holds a prefix of it. None where numbers have gaps.
    """
    snapshot = trials(study)
    if snapshot and snapshot[-1].number != len(snapshot) - 1:
        return None
    end = len(log)
    while end:
        number = log[end - 1].number
        if number < len(snapshot) and snapshot[number] is log[end - 1]:
            break
        end -= 1
    return end


class FastTPESampler(TPESampler):
    """``TPESampler`` with the same suggestions and O(new trials) bookkeeping per suggestion.

    Single-objective studies on a ``TrialCache`` storage take the fast path; everything else,
    and any study with constraints, is Optuna's own code.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._caches: dict[int, _StudyCache] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        state["_caches"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _cache(self, study: Study, log: list[FrozenTrial]) -> _StudyCache:
        """The study's cache; a new one for a new study id or another storage's log."""
        cache = self._caches.get(study_id_of(study))
        if cache is None or cache.log is not log:
            minimize = study.direction == StudyDirection.MINIMIZE
            cache = self._caches[study_id_of(study)] = _StudyCache(log, minimize)
        return cache

    def _n_considered(self, study: Study) -> int | None:
        """Complete + pruned trials in the per-trial snapshot, as Optuna's startup check counts."""
        storage = storage_of(study)
        if is_multi_objective(study) or not isinstance(storage, TrialCache):
            return None
        log = storage.finished_log(study_id_of(study))
        end = _snapshot_end(study, log)
        if end is None:
            return None
        with self._lock:
            cache = self._cache(study, log)
            cache.advance(study, end)
            return cache.considered_before[end]

    def _sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if search_space == {}:
            return {}
        n = self._n_considered(study)
        if n is None:
            return super()._sample_relative(study, trial, search_space)
        if n < self._n_startup_trials:
            return {}
        return self._sample(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        n = None if self._warn_independent_sampling else self._n_considered(study)
        if n is None:
            return super().sample_independent(study, trial, param_name, param_distribution)
        if n < self._n_startup_trials:
            return self._random_sampler.sample_independent(
                study, trial, param_name, param_distribution
            )
        return self._sample(study, trial, {param_name: param_distribution})[param_name]

    def _sample(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        observations = self._observations(study, trial, search_space)
        if observations is None:
            return super()._sample(study, trial, search_space)
        mpe_below, mpe_above = (
            self._parzen_estimator_cls(obs, search_space, self._parzen_estimator_parameters)
            for obs in observations
        )
        if not all(isinstance(mpe, _ParzenEstimator) for mpe in (mpe_below, mpe_above)):
            raise RuntimeError("_parzen_estimator_cls must override _ParzenEstimator.")
        samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acq_func_vals = self._compute_acquisition_func(samples_below, mpe_below, mpe_above)
        ret = TPESampler._compare(samples_below, acq_func_vals)
        for param_name, dist in search_space.items():
            ret[param_name] = dist.to_external_repr(ret[param_name])
        return ret

    def _observations(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> tuple[_Observations, _Observations] | None:
        """The below and above observations ``TPESampler._sample`` would build, or None."""
        storage = storage_of(study)
        if is_multi_objective(study) or not isinstance(storage, TrialCache):
            return None
        if not all(isinstance(dist, _KNOWN) for dist in search_space.values()):
            return None
        if self._constant_liar:  # Optuna reads the study afresh
            log = finished_log(storage, study_id_of(study))
            end: int | None = len(log) if log is not None else None
        else:  # Optuna reads the snapshot taken for this trial
            log = storage.finished_log(study_id_of(study))
            end = _snapshot_end(study, log)
        if log is None or end is None:
            return None
        with self._lock:
            cache = self._cache(study, log)
            if end < cache.cursor:  # an older snapshot (another thread's): not kept
                return None
            cache.advance(study, end)
            if cache.constrained:
                return None
            if self._gamma is None:
                self._gamma = default_gamma
            below = cache.below(self._gamma(cache.considered_before[end]))
            return self._split_observations(study, trial, cache, search_space, below)

    def _split_observations(
        self,
        study: Study,
        trial: FrozenTrial,
        cache: _StudyCache,
        search_space: dict[str, BaseDistribution],
        below: list[int],
    ) -> tuple[_Observations, _Observations] | None:
        """Observation arrays of the below trials and of the rest plus the running ones."""
        size = len(cache.considered)
        cols = {name: cache.column(name, dist) for name, dist in search_space.items()}
        included = cache.considered.copy()
        rejected = np.zeros(size, dtype=bool)
        for col in cols.values():
            included &= col.has[:size]
            rejected |= col.bad[:size]
        if (included & rejected).any():
            return None  # Optuna raises for this trial's value: let it
        below_all = np.asarray(below, dtype=np.intp)
        below_idx = below_all[included[below_all]]
        included[below_all] = False
        above_idx = np.flatnonzero(included)
        obs_below = {name: _as_observed(col.values[below_idx]) for name, col in cols.items()}
        obs_above = {name: col.values[above_idx] for name, col in cols.items()}
        if self._constant_liar:
            self._add_running(study, trial, cols, above_idx, obs_above)
        return obs_below, {name: _as_observed(values) for name, values in obs_above.items()}

    def _add_running(
        self,
        study: Study,
        trial: FrozenTrial,
        cols: dict[str, _Column],
        above_idx: np.ndarray,
        obs_above: _Observations,
    ) -> None:
        """Merge the other running trials into ``obs_above`` in trial-number order."""
        storage = storage_of(study)
        assert isinstance(storage, TrialCache)
        numbers: list[int] = []
        values: dict[str, list[Any]] = {name: [] for name in cols}
        for other in storage.unfinished(study_id_of(study)):
            if other.state != TrialState.RUNNING or other.number == trial.number:
                continue
            params = self._get_params(other, study)
            if cols.keys() <= params.keys():
                numbers.append(other.number)
                for name, col in cols.items():
                    values[name].append(col.dist.to_internal_repr(params[name]))
        if not numbers:
            return
        order = np.argsort(np.concatenate([above_idx, numbers]), kind="stable")
        for name, col in cols.items():
            running = np.asarray(values[name], dtype=col.values.dtype)
            obs_above[name] = np.concatenate([obs_above[name], running])[order]
