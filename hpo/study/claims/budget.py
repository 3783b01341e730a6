"""The trial budget, kept in the storage as a small pool of WAITING trials that workers claim.

A study of ``n_trials`` never holds more than ``n_trials`` budget trials. The budget itself is a
study attribute (``hpo:n_trials``). Workers only ever *claim* a waiting trial and never create
one; when the pool is empty, a worker refills it under a cross-node lock with at most ``POOL``
new waiting trials, and never beyond the budget. So workers and nodes together run exactly
``n_trials`` trials. The pool stays small because Optuna's trial cache re-reads every
unfinished trial on each read: a pool of the whole budget would make every storage read
O(budget). Grid points are enqueued with their parameters fixed, so each point runs once. A
retry of a crashed trial (system attr ``failed_trial``) continues its slot and does not count,
and neither does the history a warm start copied in (``hpo.study.search.warm``).

A study bounded by an epoch budget alone (``budget.max_epochs_total``, no ``n_trials``) has no
trial limit (``hpo:n_trials`` is null): the pool is kept full and the epoch budget
(:mod:`hpo.study.claims.epochs`) ends the study.
"""

from __future__ import annotations

import json
import logging
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.keys import ATTR_BUDGET, ATTR_WARM
from hpo.spec import GridSpec, StudySpec
from hpo.study._optuna import (
    FAILED_TRIAL,
    FIXED_PARAMS,
    backend_of,
    forget_trials,
    pop_waiting,
    storage_of,
    study_id_of,
    trial_id_of,
)
from hpo.study._optuna.fast_paths import fast_paths
from hpo.study._optuna.sql_writes import UpsertWrites
from hpo.study._optuna.trial_cache import TrialCache
from hpo.study.claims.retry import fail_and_retry
from hpo.study.storage.connect import Storage, study_lock

log = logging.getLogger(__name__)


def is_retry(trial: FrozenTrial) -> bool:
    """Whether ``trial`` re-runs a failed one (created by the retry callback)."""
    return FAILED_TRIAL in trial.system_attrs


def is_warm(trial: FrozenTrial) -> bool:
    """Whether ``trial`` is history a warm start copied in, not one of the study's own."""
    return ATTR_WARM in trial.system_attrs


def budget_used(trials: list[FrozenTrial]) -> int:
    """Budget slots taken by ``trials``: every trial except retries and warm-start history."""
    return sum(1 for t in trials if not is_retry(t) and not is_warm(t))


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=repr)


#: Waiting budget trials kept in the storage at most (a refill adds up to this many).
POOL = 8


def set_budget(study: optuna.Study, n_trials: int | None) -> None:
    """Record the study's total trial budget (None: no trial limit)."""
    storage_of(study).set_study_system_attr(study_id_of(study), ATTR_BUDGET, n_trials)


def get_budget(study: optuna.Study) -> int | None:
    """The study's trial budget: None for no trial limit, 0 for a study hpo never prepared."""
    value = storage_of(study).get_study_system_attrs(study_id_of(study)).get(ATTR_BUDGET, 0)
    return None if value is None else int(value)


def raise_budget(study: optuna.Study, n_trials: int | None, explicit: bool = False) -> bool:
    """Raise the study's budget to ``n_trials`` (None: no limit, the largest); it never
    shrinks. True when it was set.

    Nodes that ask for different budgets at the same moment thus end with the largest one,
    whatever their order. Asking ``explicit``-ly (``--n-trials``) for less than the recorded
    budget leaves it, with a warning. Call it under the study's or the schema's lock.
    """
    current = get_budget(study)
    if current is not None and (n_trials is None or n_trials > current):
        set_budget(study, n_trials)
        return True
    if explicit and n_trials is not None and (current is None or n_trials < current):
        kept = "no trial limit" if current is None else f"a budget of {current} trials"
        log.warning(
            "--n-trials %d: study %r already has %s, which is kept (a budget only grows)",
            n_trials,
            study.study_name,
            kept,
        )
    return False


def refill(study: optuna.Study, storage: Storage, spec: StudySpec, force: bool = False) -> int:
    """Enqueue up to ``POOL`` waiting trials, never beyond the budget; returns how many.

    Without a cross-node lock (behind a gRPC proxy) a refill would race: there only a
    ``force`` caller (the node that created the study, or one given ``--n-trials``) refills,
    and it enqueues the whole remaining budget at once. Without a trial limit every caller
    tops the pool up to ``POOL`` (a race only leaves a few more waiting trials).
    """
    with study_lock(storage, study.study_name) as locked:
        limit = get_budget(study)
        if not locked and not force and limit is not None:
            return 0
        trials = study.get_trials(deepcopy=False)
        waiting = sum(1 for t in trials if t.state == TrialState.WAITING and not is_retry(t))
        if limit is None:
            missing = POOL - waiting
        else:
            missing = limit - budget_used(trials)
            if locked:
                missing = min(missing, POOL - waiting)
        if missing <= 0:
            return 0
        if isinstance(spec.sampler, GridSpec):
            seen = {_key(t.system_attrs.get(FIXED_PARAMS, t.params)) for t in trials}
            points = [p for p in _shuffled_grid(spec) if _key(p) not in seen][:missing]
        else:
            points = [{}] * missing
        if isinstance(storage, UpsertWrites) and storage.upserts:
            storage.enqueue_waiting(study_id_of(study), points)
        else:
            for params in points:
                study.enqueue_trial(params)
        return len(points)


def next_trial(study: optuna.Study, storage: Storage, spec: StudySpec) -> optuna.Trial | None:
    """Claim a waiting trial, refilling the pool when it is empty; None when the budget is spent."""
    while True:
        trial = claim(study)
        if trial is not None:
            return trial
        if refill(study, storage, spec) == 0 and not _any_waiting(study):
            return None


def _any_waiting(study: optuna.Study) -> bool:
    return bool(storage_of(study).get_n_trials(study_id_of(study), state=TrialState.WAITING))


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
    if not fast_paths():
        return _claim_by_ask(study)
    forget_trials(study)  # the per-trial sync Study.ask does
    storage = storage_of(study)
    if isinstance(storage, TrialCache) and storage.backend.upserts:
        trial_id = storage.claim(study_id_of(study))
    else:
        trial_id = pop_waiting(study)
    if trial_id is None:
        return None
    return optuna.Trial(study, trial_id)


def _claim_by_ask(study: optuna.Study) -> optuna.Trial | None:
    """The plain Optuna claim: ``Study.ask`` pops the oldest WAITING trial. Under the study
    lock no other worker can empty the pool between the check and the ask, so it never
    creates a trial. Behind a gRPC proxy there is no lock, and ``ask`` would create one when
    another worker took the last WAITING trial in between: there the pop is done through the
    storage's public, atomic state change instead (:func:`_pop_waiting`)."""
    with study_lock(backend_of(storage_of(study)), study.study_name) as locked:
        if not locked:
            return _pop_waiting(study)
        if not _any_waiting(study):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "heartbeat ... used with Study.optimize": hpo beats
            return study.ask()


def _pop_waiting(study: optuna.Study) -> optuna.Trial | None:
    """What ``Study.ask`` does to a WAITING trial, with public storage methods alone: the
    change to RUNNING is atomic in the storage (False, or UpdateFinishedTrialError, when another
    worker got there first), so no two workers take one trial and none is ever created."""
    storage, study_id = storage_of(study), study_id_of(study)
    for waiting in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(trial_id_of(waiting), state=TrialState.RUNNING):
                return optuna.Trial(study, trial_id_of(waiting))
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def requeue(
    study: optuna.Study, trial_id: int, reason: str, max_retries: int, counted: bool = True
) -> None:
    """Fail a RUNNING trial whose worker is gone and enqueue its retry (same params)."""
    fail_and_retry(study, trial_id, reason, counted=counted, max_retries=max_retries)
