"""Optuna's private attributes and methods on its public objects, each behind one named function.

``Study`` and ``Trial`` keep their storage, their ids and the per-thread trial snapshot in
private attributes; hpo needs them to write a trial's rows directly and to claim trials the way
``Study.ask`` does. Nothing outside ``hpo.study._optuna`` reads them.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage the study reads and writes through (hpo's ``TrialCache`` on hpo's paths)."""
    return study._storage


def study_id_of(study: optuna.Study) -> int:
    """The study's row id in its storage (the argument of every storage call)."""
    return study._study_id


def trial_id_of(trial: optuna.Trial | FrozenTrial) -> int:
    """The trial's row id in its storage (``number`` counts within the study; this does not)."""
    return trial._trial_id


def frozen(trial: optuna.Trial) -> FrozenTrial:
    """The trial as stored now: its params, reports and attrs (from the cache's copy when this
    process runs it)."""
    return trial.study._storage.get_trial(trial._trial_id)


def is_multi_objective(study: optuna.Study) -> bool:
    """Whether the study has more than one objective."""
    return len(study.directions) > 1


def forget_trials(study: optuna.Study) -> None:
    """Drop the study's per-thread snapshot of its trials, so the next sampler call reads the
    storage again: what ``Study.ask`` (and ``Study.tell``) do once per trial.

    An assignment to a ``threading.local`` never fails, so a renamed attribute would leave
    samplers on a stale snapshot without an error; this checks the attribute is Optuna's.
    """
    local = study._thread_local
    if "cached_all_trials" not in type(local).__annotations__:
        raise RuntimeError(
            "optuna.Study keeps no per-thread trial snapshot where hpo expects it "
            "(Study._thread_local.cached_all_trials); set HPO_FAST_PATHS=0"
        )
    local.cached_all_trials = None


def pop_waiting(study: optuna.Study) -> int | None:
    """Optuna's own claim of a WAITING trial (``Study.ask`` without creating one), or None."""
    return study._pop_waiting_trial_id()


def trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials from the per-thread snapshot (read once per trial, not copied): what
    Optuna's samplers read."""
    return study._get_trials(deepcopy=False, use_cache=True)


def backend_of(storage: BaseStorage) -> BaseStorage:
    """The database storage behind Optuna's or hpo's per-process cache (itself otherwise)."""
    return getattr(storage, "_backend", storage)


def stale_trial_ids(storage: BaseStorage, study_id: int) -> list[int] | None:
    """RUNNING trials whose heartbeat lapsed, or None where the storage has no heartbeats (a
    gRPC proxy, or heartbeats off)."""
    stale = getattr(storage, "_get_stale_trial_ids", None)
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)
    if stale is None or interval() is None:
        return None
    return list(stale(study_id))


def heartbeat_thread(trial: optuna.Trial, storage: BaseStorage) -> Any:
    """Optuna's heartbeat thread for ``trial`` as a context manager (a no-op where heartbeats
    are off)."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    return get_heartbeat_thread(trial._trial_id, storage)
