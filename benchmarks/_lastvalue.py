"""Experiment: TPE told every pruned trial's last value as if complete (Ray Tune's way)."""

from __future__ import annotations

import math
from typing import Any

from optuna.samplers import TPESampler
from optuna.samplers._tpe.sampler import default_gamma
from optuna.study import StudyDirection
from optuna.trial import TrialState

_RUN = TrialState.RUNNING


class LastValueTPE(TPESampler):
    def _sample(self, study, trial, search_space) -> dict[str, Any]:
        states = [TrialState.COMPLETE, TrialState.PRUNED] + ([_RUN] if self._constant_liar else [])
        trials = [
            t
            for t in study._get_trials(deepcopy=False, states=states, use_cache=False)
            if t.number != trial.number
        ]
        sign = 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0
        scored, running = [], []
        for t in trials:
            if t.state == _RUN:
                running.append(t)
                continue
            if t.state == TrialState.COMPLETE:
                v = t.value
            elif t.intermediate_values:
                v = t.intermediate_values[max(t.intermediate_values)]
            else:
                v = math.nan
            key = math.inf if v is None or math.isnan(v) else sign * v
            scored.append((key, t.number, t))
        scored.sort(key=lambda s: (s[0], s[1]))
        n_below = (self._gamma or default_gamma)(len(scored))
        below = sorted((s[2] for s in scored[:n_below]), key=lambda t: t.number)
        above = sorted([s[2] for s in scored[n_below:]] + running, key=lambda t: t.number)
        mpe_below = self._build_parzen_estimator(study, search_space, below, handle_below=True)
        mpe_above = self._build_parzen_estimator(study, search_space, above, handle_below=False)
        samples = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acq = self._compute_acquisition_func(samples, mpe_below, mpe_above)
        ret = TPESampler._compare(samples, acq)
        return {k: d.to_external_repr(ret[k]) for k, d in search_space.items()}
