"""Experiment (issue 22): TPE told every pruned trial's last value as if the trial were complete,
Ray Tune's way (its ``OptunaSearch`` tells a stopped trial's last result as COMPLETE). Optuna's
TPE, which hpo uses, ranks pruned trials below every complete one, by the step they reached.
Measured as ``hpo:tpe-univariate-lastvalue(-r1)`` in search_efficiency.py: no better
(BENCHMARKS.md).
"""

from __future__ import annotations

import math
from typing import Any

from optuna.samplers import TPESampler
from optuna.samplers._tpe.sampler import default_gamma
from optuna.study import StudyDirection
from optuna.trial import TrialState

from hpo.study._optuna.mftpe import suggest_from_split

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
        return suggest_from_split(self, study, search_space, below, above)
