"""An RDBStorage that rides out database restarts and dropped connections.

Each storage method hpo's processes call (directly, or through Optuna's ``_CachedStorage``,
which also calls private ones) is wrapped with ``hpo.study.storage.outage.ride_out``. The calls
hpo makes are idempotent on retry (reports, attributes and heartbeats overwrite; a state change
that already went through raises ``UpdateFinishedTrialError``, which the worker expects).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from optuna.storages import RDBStorage

from hpo.errors import StorageError
from hpo.study._optuna.sql_writes import UpsertWrites
from hpo.study.storage.outage import OUTAGE, ride_out

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: RDBStorage methods hpo's processes call (directly, or through Optuna's _CachedStorage, which
#: also calls the private ones), each wrapped with the retry loop.
RETRIED = (
    # The one call that is not idempotent: retried after a commit whose answer was lost, it
    # adds again (an epoch counted twice, never one missed: the epoch budget errs on the side
    # of stopping early).
    "add_to_study_attr",
    "study_system_attrs_of",
    "enqueue_waiting",
    "system_attrs_like",
    "claim_waiting",
    "_create_new_trial",
    "_get_best_trial_id",
    "_get_trials",
    "_set_trial_param",
    "create_new_study",
    # Retried after a commit whose answer was lost, it finds no study and raises KeyError.
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "set_trial_param",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_user_attrs",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "get_all_trials",
    "get_best_trial",
    "get_n_trials",
)


def _retrying(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: _Resilient, *args: Any, **kwargs: Any) -> Any:
        return ride_out(
            lambda: method(self, *args, **kwargs), self.outage_seconds, self._after_failure
        )

    wrapper.retried = True  # type: ignore[attr-defined]  # checked by the contract test
    return wrapper  # type: ignore[return-value]


class _Resilient(RDBStorage):
    """RDBStorage whose calls survive a database outage of up to ``outage_seconds``."""

    def __init__(self, url: str, *, outage_seconds: float = 300.0, **kwargs: Any) -> None:
        self.outage_seconds = outage_seconds
        self.trial_numbers: dict[int, int] = {}  # trial id -> number, of this process's beats
        try:
            super().__init__(url, **kwargs)
        except BaseException:
            # A failed start (too many clients) is retried with a new storage; the connection
            # this one holds must not stay open, taking a slot from the server until a gc.
            engine = getattr(self, "engine", None)
            if engine is not None:
                engine.dispose()
            raise

    def _after_failure(self) -> None:
        self.remove_session()  # a fresh session next time, not the broken one

    def record_heartbeat(self, trial_id: int) -> None:
        """A heartbeat that outlives an outage: tried every second while the database is
        down, so it is written within a second of its return, before any node may judge the
        trial stale (:meth:`_get_stale_trial_ids`). The trial loop's own storage calls decide
        whether the worker gives up."""
        beat = super().record_heartbeat
        try:
            ride_out(
                lambda: beat(trial_id),
                self.outage_seconds,
                self._after_failure,
                max_delay=1.0,
                quiet=True,
            )
        except StorageError as exc:
            number = self.trial_numbers.get(trial_id)
            name = f"trial {number}" if number is not None else f"trial id {trial_id}"
            log.warning("heartbeat of %s not recorded: %s", name, exc)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """RUNNING trials whose heartbeat lapsed, judged only when this process's storage has
        been up for a whole grace period: during an outage and for ``grace_period`` after it
        no heartbeat could be written, so every live trial would look stale. Live workers
        re-assert theirs within a second of the database's return (:meth:`record_heartbeat`);
        a dead node's trials are judged one grace period later."""
        stale = ride_out(
            lambda: super(_Resilient, self)._get_stale_trial_ids(study_id),
            self.outage_seconds,
            self._after_failure,
        )
        interval = self.get_heartbeat_interval() or 0
        grace = self.grace_period if self.grace_period is not None else 2 * interval
        return stale if OUTAGE.settled(grace) else []


class ResilientRDBStorage(_Resilient, UpsertWrites):
    """hpo's database storage: one-statement reads and writes, riding out outages."""


class PlainResilientStorage(_Resilient):
    """Optuna's own ``RDBStorage``, riding out outages: the storage of the plain Optuna paths
    (``fast_paths``). Only methods the installed Optuna has are wrapped."""


for _cls in (ResilientRDBStorage, PlainResilientStorage):
    for _name in RETRIED:
        _method = getattr(_cls, _name, None)
        if _method is not None:
            setattr(_cls, _name, _retrying(_method))
