"""The trial budget, kept in the storage as WAITING trials that workers claim one by one.

A study of ``n_trials`` holds exactly ``n_trials`` budget trials. Whoever starts or joins the
study tops the pool up under a cross-node lock; workers only ever *claim* a waiting trial and
never create one, so workers and nodes together run exactly ``n_trials`` trials. Grid points are
enqueued with their parameters fixed, so each point runs once. A retry of a crashed trial
(system attr ``failed_trial``) continues its slot and does not count against the budget.
"""

from __future__ import annotations

import json
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.spec import GridSpec, StudySpec
from hpo.study.storage import Storage, retry_callback, study_lock


def is_retry(trial: FrozenTrial) -> bool:
    """Whether ``trial`` re-runs a failed one (created by the retry callback)."""
    return "failed_trial" in trial.system_attrs


def budget_used(trials: list[FrozenTrial]) -> int:
    """Budget slots taken by ``trials``: every trial except retries."""
    return sum(1 for t in trials if not is_retry(t))


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=repr)


def top_up(
    study: optuna.Study, storage: Storage, spec: StudySpec, n_trials: int, force: bool = True
) -> int:
    """Enqueue waiting trials until the study holds ``n_trials`` budget trials; returns how many.

    Without a cross-node lock (behind a gRPC proxy) only ``force`` callers top up: the node that
    created the study, or one given ``--n-trials``; others would race and overshoot.
    """
    with study_lock(storage, study.study_name) as locked:
        if not locked and not force:
            return 0
        trials = study.get_trials(deepcopy=False)
        missing = n_trials - budget_used(trials)
        if missing <= 0:
            return 0
        if isinstance(spec.sampler, GridSpec):
            seen = {_key(t.system_attrs.get("fixed_params", t.params)) for t in trials}
            points = [p for p in _shuffled_grid(spec) if _key(p) not in seen][:missing]
        else:
            points = [{}] * missing
        for params in points:
            study.enqueue_trial(params)
        return len(points)


def _shuffled_grid(spec: StudySpec) -> list[dict[str, Any]]:
    import random

    points = spec.grid()
    seed = spec.sampler.seed if isinstance(spec.sampler, GridSpec) else None
    random.Random(seed).shuffle(points)
    return points


def claim(study: optuna.Study) -> optuna.Trial | None:
    """Take one WAITING trial and mark it RUNNING, or None when the budget is spent.

    Unlike ``Study.ask`` this never creates a trial, which is what keeps the budget exact.
    The state change is atomic in the storage (FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE on
    SQLite), so two workers never run the same trial.
    """
    study._thread_local.cached_all_trials = None  # same per-trial sync as Study.ask
    trial_id = study._pop_waiting_trial_id()
    if trial_id is None:
        return None
    return optuna.Trial(study, trial_id)


def requeue(study: optuna.Study, trial_id: int, reason: str, max_retries: int) -> None:
    """Fail a RUNNING trial whose worker is gone and enqueue its retry (same params)."""
    storage = study._storage
    storage.set_trial_user_attr(trial_id, "fail_reason", reason)
    if storage.set_trial_state_values(trial_id, TrialState.FAIL):
        retry_callback(max_retries)(study, storage.get_trial(trial_id))
