"""An RDBStorage that rides out database restarts and dropped connections.

Each storage method hpo's processes call (directly, or through Optuna's ``_CachedStorage``,
which also calls private ones) is wrapped with ``hpo.study.storage.outage.ride_out``. The calls
hpo makes are idempotent on retry (reports, attributes and heartbeats overwrite; a state change
that already went through raises ``UpdateFinishedTrialError``, which the worker expects).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from optuna.storages import RDBStorage

from hpo.errors import StorageError
from hpo.study._optuna.sql_writes import UpsertWrites
from hpo.study.storage.outage import ride_out

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
    "_get_stale_trial_ids",
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
        self.last_outage: float | None = None  # time.monotonic() of the last failed attempt
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
        self.last_outage = time.monotonic()
        self.remove_session()  # a fresh session next time, not the broken one

    def record_heartbeat(self, trial_id: int) -> None:
        """A heartbeat that outlives an outage: the heartbeat thread must keep beating once
        the database is back, or a live trial would be failed as stale. The trial loop's own
        storage calls decide whether the worker gives up."""
        beat = super().record_heartbeat
        try:
            ride_out(lambda: beat(trial_id), self.outage_seconds, self._after_failure)
        except StorageError as exc:
            log.warning("heartbeat of trial id %d not recorded: %s", trial_id, exc)

    def recently_down(self, window: float) -> bool:
        """Whether the database was unreachable in the last ``window`` seconds."""
        return self.last_outage is not None and time.monotonic() - self.last_outage < window


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
