"""Multi-fidelity TPE: the model BOHB uses, inside Optuna's sampler interface.

With a pruner most trials stop at the first rung, so plain TPE ranks a few completed trials
against many pruned ones of unequal length. BOHB (Falkner et al., 2018) instead models one
budget at a time: the highest rung that enough trials have reached, every trial compared on its
metric at that rung. ``MultiFidelityTPESampler`` does that with Optuna's own Parzen estimators:
it picks the rung, splits the trials that reached it (running ones included: their value there
is final) into the best ``gamma(n)`` and the rest, and samples where the best are likelier.
Before any rung has enough trials it is Optuna's TPE unchanged (random first, then TPE).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import TPESampler
from optuna.samplers._tpe.sampler import default_gamma
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpo.study._optuna.objects import is_multi_objective

_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def rungs(min_resource: int, reduction_factor: int, max_resource: int, rate: int = 0) -> list[int]:
    """The epochs at which successive halving compares trials, then the full run."""
    steps: list[int] = []
    step = min_resource * reduction_factor**rate
    while step < max_resource:
        steps.append(step)
        step *= reduction_factor
    return [*steps, max_resource]


def suggest_from_split(
    sampler: TPESampler,
    study: Study,
    search_space: dict[str, BaseDistribution],
    below: list[FrozenTrial],
    above: list[FrozenTrial],
) -> dict[str, Any]:
    """TPE's suggestion from a split of the trials into good (``below``) and the rest: Optuna's
    Parzen estimators, acquisition and random state, as ``TPESampler._sample`` after its split."""
    mpe_below = sampler._build_parzen_estimator(study, search_space, below, handle_below=True)
    mpe_above = sampler._build_parzen_estimator(study, search_space, above, handle_below=False)
    samples = mpe_below.sample(sampler._rng.rng, sampler._n_ei_candidates)
    acquisition = sampler._compute_acquisition_func(samples, mpe_below, mpe_above)
    chosen = TPESampler._compare(samples, acquisition)
    return {name: dist.to_external_repr(chosen[name]) for name, dist in search_space.items()}


class MultiFidelityTPESampler(TPESampler):
    """Optuna's TPE fitted to the trials' metric at the highest well-populated rung.

    Args:
        rungs: the epochs (steps) compared, ascending; the last is a full run.
        min_points: trials a rung needs before it is modelled (default: the number of
            parameters + 3, BOHB's N_min + 2).
        **kwargs: ``optuna.samplers.TPESampler``'s.
    """

    def __init__(self, rungs: Sequence[int], min_points: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rungs = sorted(rungs)
        self._min_points = min_points

    def _sample(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if is_multi_objective(study):
            return super()._sample(study, trial, search_space)
        trials = [
            t for t in study.get_trials(deepcopy=False, states=_STATES) if t.number != trial.number
        ]
        needed = self._min_points or len(search_space) + 3
        ranked = self._at_highest_rung(trials, needed, study.direction)
        if ranked is None:
            return super()._sample(study, trial, search_space)
        reached, stopped = ranked
        # The good set comes from the trials compared at the rung; every trial stopped below it
        # (worse, by the pruner's own judgement) joins the bad set, or the bad set would hold
        # only good configurations and push samples into regions already ruled out.
        n_below = min((self._gamma or default_gamma)(len(reached) + len(stopped)), len(reached))
        return suggest_from_split(
            self, study, search_space, reached[:n_below], reached[n_below:] + stopped
        )

    def _at_highest_rung(
        self, trials: list[FrozenTrial], needed: int, direction: StudyDirection
    ) -> tuple[list[FrozenTrial], list[FrozenTrial]] | None:
        """The trials that reached the highest rung with ``needed`` of them, best first by
        their best value up to that rung, and the trials that stopped below it; None when no
        rung has enough."""
        maximize = direction == StudyDirection.MAXIMIZE
        for rung in reversed(self._rungs):
            scored: list[tuple[float, int, FrozenTrial]] = []
            stopped: list[FrozenTrial] = []
            for t in trials:
                steps = t.intermediate_values
                if not steps:
                    continue  # running, nothing reported yet
                if max(steps) < rung and t.state != TrialState.COMPLETE:
                    # (a completed trial that stopped early, by patience, is final)
                    if t.state == TrialState.PRUNED:
                        stopped.append(t)
                    continue
                values = [v for step, v in steps.items() if step <= rung and not math.isnan(v)]
                best = (max(values) if maximize else min(values)) if values else math.nan
                badness = math.inf if not values else (-best if maximize else best)
                scored.append((badness, t.number, t))
            if len(scored) >= needed:
                scored.sort(key=lambda entry: entry[:2])
                return [t for _, _, t in scored], stopped
        return None
