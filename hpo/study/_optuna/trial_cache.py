"""A worker's view of the study: finished trials kept once, its own running trial kept locally.

Optuna already caches finished trials per process (``_CachedStorage``: a trial that finished
never changes, so only unfinished and new trials are read again). What it still does on every
read is O(study size) in Python: filter and sort every trial, and rebuild a whole trial (seven
statements) to read one attribute of the trial the worker is running. ``TrialCache`` adds:

- a log of finished trials in the order this process saw them finish, append-only, so a sampler
  or pruner can update its own state from the trials that finished since it last looked
  (``finished_log``) instead of re-scanning the study;
- reads of WAITING/RUNNING trials that touch only the unfinished trials, and a sorted list of the
  finished ones that is extended rather than re-sorted;
- a write-through copy of each trial this process claimed: every write still goes to the
  database at once (no reported value is held back), and reads of that trial are answered from
  the copy. Only the worker that claimed a trial writes to it; if another process fails it as
  stale, the next write raises ``UpdateFinishedTrialError`` as before.
"""

from __future__ import annotations

import bisect
import copy
import datetime
from collections.abc import Container, Sequence
from operator import attrgetter
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.trial import FrozenTrial, Trial, TrialState

from hpo.study._optuna.objects import trial_id_of
from hpo.study._optuna.sql_writes import UpsertWrites

_number = attrgetter("number")


class TrialCache(_CachedStorage):
    """``_CachedStorage`` with a finished-trial log and a local copy of the trials it runs."""

    def __init__(self, backend: UpsertWrites) -> None:
        super().__init__(backend)
        self._db = backend  # the same object, typed with hpo's one-statement operations
        self._log: dict[int, list[FrozenTrial]] = {}  # study id -> finished trials, as seen
        self._by_number: dict[int, list[FrozenTrial]] = {}  # study id -> finished, by number
        self._logged: set[int] = set()
        self._owned: dict[int, FrozenTrial] = {}  # trial id -> this process's running trial
        self._ids: dict[str, int] = {}  # study name -> id (a study's id never changes)

    @property
    def backend(self) -> UpsertWrites:
        """The database storage behind the cache (locks, engine, outage state)."""
        return self._db

    # -- reading the study ------------------------------------------------------------------

    def refresh(self, study_id: int) -> None:
        """Read the trials that are new or were unfinished (one round of queries)."""
        self._read_trials_from_remote_storage(study_id)

    def finished_log(self, study_id: int) -> list[FrozenTrial]:
        """Every finished trial of the study this process has read, in the order it read them.

        Append-only and never copied: callers keep an index into it and read on from there.
        """
        with self._lock:
            return self._log.setdefault(study_id, [])

    def unfinished(self, study_id: int) -> list[FrozenTrial]:
        """The study's WAITING and RUNNING trials as of the last refresh, by number."""
        with self._lock:
            return self._unfinished_locked(study_id)

    def unlogged_system_attrs(self, study_id: int, pattern: str) -> list[tuple[int, int, str, Any]]:
        """Fresh from the database: the system attrs matching ``pattern`` (SQL LIKE) of every
        trial of the study that is not in the finished log, in one query.

        Together with the log this covers every trial: the log holds the finished trials up
        to the last finished id read, and the rest have a higher id or are listed unfinished.
        """
        after, ids = self._unread(study_id)
        rows = self._db.system_attrs_like(study_id, pattern, after, ids)
        return [row for row in rows if row[0] not in self._logged]

    def _unread(self, study_id: int) -> tuple[int, list[int]]:
        """Where trials outside the finished log can be: ids above the last finished one read,
        and the ids read while unfinished (every other trial is finished and logged)."""
        with self._lock:
            info = self._studies.setdefault(study_id, _StudyInfo())
            return info.last_finished_trial_id, sorted(info.unfinished_trial_ids)

    def _unfinished_locked(self, study_id: int) -> list[FrozenTrial]:
        info = self._studies[study_id]
        trials = []
        for trial_id in info.unfinished_trial_ids:
            number = self._trial_id_to_study_id_and_number[trial_id][1]
            trial = info.trials[number]
            if not trial.state.is_finished():
                trials.append(trial)
        trials.sort(key=_number)
        return trials

    def _add_trials_to_cache(self, study_id: int, trials: list[FrozenTrial]) -> None:
        self._studies.setdefault(study_id, _StudyInfo())  # a study this process never read
        super()._add_trials_to_cache(study_id, trials)
        info = self._studies[study_id]
        log = self._log.setdefault(study_id, [])
        ordered = self._by_number.setdefault(study_id, [])
        for trial in trials:
            if not trial.state.is_finished():
                # Also a trial this process just created: read again until it finishes.
                info.unfinished_trial_ids.add(trial_id_of(trial))
            elif trial_id_of(trial) not in self._logged:
                self._logged.add(trial_id_of(trial))
                log.append(trial)
                bisect.insort(ordered, trial, key=_number)

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        self._read_trials_from_remote_storage(study_id)
        with self._lock:
            unfinished = self._unfinished_locked(study_id)
            if states is not None and not any(s in states for s in _FINISHED):
                trials = [t for t in unfinished if t.state in states]
            else:
                trials = list(self._by_number.get(study_id, ()))
                for trial in unfinished:
                    trials.insert(bisect.bisect(trials, trial.number, key=_number), trial)
                if states is not None:
                    trials = [t for t in trials if t.state in states]
            return copy.deepcopy(trials) if deepcopy else trials

    # -- the trial this process runs ---------------------------------------------------------

    def claim(self, study_id: int) -> int | None:
        """Take the study's first WAITING trial for this process (one statement); its id."""
        claimed = self._db.claim_waiting(study_id, *self._unread(study_id))
        if claimed is None:
            return None
        trial_id, started = claimed
        with self._lock:
            trial = self._get_waiting(trial_id)
        if trial is None:  # enqueued since this process last read the study
            trial = self._backend.get_trial(trial_id)
        else:  # a waiting trial is written whole when enqueued: the cached copy is current
            trial.state, trial.datetime_start = TrialState.RUNNING, started
        with self._lock:
            self._add_trials_to_cache(study_id, [copy.deepcopy(trial)])
        self._owned[trial_id] = trial
        return trial_id

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)
        with self._lock:
            where = self._trial_id_to_study_id_and_number[trial_id]
            trial = self._studies[where[0]].trials[where[1]]
        if trial.state == TrialState.RUNNING:  # Study.ask created it for this process
            self._owned[trial_id] = copy.deepcopy(trial)
        return trial_id

    def _get_waiting(self, trial_id: int) -> FrozenTrial | None:
        where = self._trial_id_to_study_id_and_number.get(trial_id)
        if where is None:
            return None
        trial = self._studies[where[0]].trials.get(where[1])
        if trial is None or trial.state != TrialState.WAITING:
            return None
        return copy.deepcopy(trial)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        owned = self._owned.get(trial_id)
        if owned is not None:
            return copy.deepcopy(owned)
        return super().get_trial(trial_id)

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        owned = self._owned.get(trial_id)
        if owned is not None:
            return copy.deepcopy(owned.system_attrs)
        return super().get_trial_system_attrs(trial_id)

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        owned = self._owned.get(trial_id)
        if owned is not None:
            return copy.deepcopy(owned.user_attrs)
        return super().get_trial_user_attrs(trial_id)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        done = self._write(trial_id, super().set_trial_state_values, trial_id, state, values)
        if state == TrialState.RUNNING and done:
            self._owned[trial_id] = self._backend.get_trial(trial_id)
        elif state.is_finished():
            owned = self._owned.pop(trial_id, None)
            if owned is not None and done:
                self._finished_here(owned, state, values)
        return done

    def _finished_here(
        self, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        """Cache the trial this process just finished, as the database now holds it (but for
        the completion time, which the database set a moment apart). The next refresh reads
        the stored row, since the trial is still listed as unfinished until then."""
        trial.state = state
        if values is not None:
            trial.values = list(values)
        trial.datetime_complete = datetime.datetime.now()
        study_id = self._trial_id_to_study_id_and_number[trial_id_of(trial)][0]
        with self._lock:
            self._add_trials_to_cache(study_id, [trial])

    def get_study_id_from_name(self, study_name: str) -> int:
        # Optuna's bracket studies (Hyperband) look their study up by name at every prune.
        study_id = self._ids.get(study_name)
        if study_id is None:
            study_id = self._ids[study_name] = super().get_study_id_from_name(study_name)
        return study_id

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        self._write(
            trial_id,
            super().set_trial_param,
            trial_id,
            param_name,
            param_value_internal,
            distribution,
        )
        owned = self._owned.get(trial_id)
        if owned is not None:
            owned.params[param_name] = distribution.to_external_repr(param_value_internal)
            owned.distributions[param_name] = distribution

    def set_trial_intermediate_value(self, trial_id: int, step: int, value: float) -> None:
        self._write(trial_id, super().set_trial_intermediate_value, trial_id, step, value)
        owned = self._owned.get(trial_id)
        if owned is not None:
            owned.intermediate_values[step] = value

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.set_trial_user_attrs(trial_id, {key: value})

    def set_trial_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Several user attrs of one trial in one transaction (where the database allows)."""
        self._write(trial_id, self._db.set_trial_user_attrs, trial_id, attrs)
        owned = self._owned.get(trial_id)
        if owned is not None:
            owned.user_attrs.update(copy.deepcopy(attrs))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._write(trial_id, super().set_trial_system_attr, trial_id, key, value)
        owned = self._owned.get(trial_id)
        if owned is not None:
            owned.system_attrs[key] = copy.deepcopy(value)

    def _write(self, trial_id: int, method: Any, *args: Any) -> Any:
        try:
            return method(*args)
        except UpdateFinishedTrialError:
            self._owned.pop(trial_id, None)  # failed by another process: no longer ours
            raise


_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def set_user_attrs(trial: Trial, attrs: dict[str, Any]) -> None:
    """``trial.set_user_attr`` for several attrs, in one write where the storage allows."""
    storage = trial.storage
    if isinstance(storage, TrialCache):
        storage.set_trial_user_attrs(trial_id_of(trial), attrs)
        trial._cached_frozen_trial.user_attrs.update(copy.deepcopy(attrs))
    else:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)


def finished_log(storage: BaseStorage, study_id: int) -> list[FrozenTrial] | None:
    """The storage's finished-trial log after a refresh, or None where it keeps none (a gRPC
    proxy, an in-memory study): callers then use Optuna's own full reads."""
    if not isinstance(storage, TrialCache):
        return None
    storage.refresh(study_id)
    return storage.finished_log(study_id)
