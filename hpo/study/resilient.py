"""An RDBStorage that rides out database restarts and dropped connections.

Every storage call is retried with exponential backoff while the database is unreachable, for up
to ``outage_seconds``; after that a :class:`StorageError` says so in one line. The calls hpo
makes are idempotent on retry (reports, attributes and heartbeats overwrite; a state change that
already went through raises ``UpdateFinishedTrialError``, which the worker expects).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy.exc
from optuna.exceptions import StorageInternalError

from hpo.errors import StorageError
from hpo.study.upsert import UpsertWrites

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: A lost connection shows as OperationalError / InterfaceError; a session that was mid-transaction
#: when it was lost then refuses to reconnect until rolled back (PendingRollbackError).
_CONNECTION_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.PendingRollbackError,
)

#: RDBStorage methods hpo's processes call (directly, or through Optuna's _CachedStorage, which
#: also calls the private ones), each wrapped with the retry loop.
_RETRIED = (
    "enqueue_waiting",
    "system_attrs_like",
    "claim_waiting",
    "_create_new_trial",
    "_get_best_trial_id",
    "_get_trials",
    "_set_trial_param",
    "create_new_study",
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
    "record_heartbeat",
    "_get_stale_trial_ids",
)


def is_connection_error(exc: BaseException) -> bool:
    """True for a lost or refused database connection, also when Optuna wrapped it."""
    if isinstance(exc, StorageInternalError):
        exc = exc.__cause__ or exc
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _CONNECTION_ERRORS)


def _retrying(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        delay, started = 0.2, time.monotonic()
        while True:
            try:
                result = method(self, *args, **kwargs)
            except (StorageInternalError, *_CONNECTION_ERRORS, sqlalchemy.exc.DBAPIError) as exc:
                if not is_connection_error(exc):
                    raise
                waited = time.monotonic() - started
                if waited + delay > self.outage_seconds:
                    raise StorageError(
                        f"storage unreachable for {waited:.0f} s (retry.storage_outage "
                        f"{self.outage_seconds:.0f} s): {_first_line(exc)}"
                    ) from None
                log.warning("storage unreachable (%s); retrying in %.1f s", _first_line(exc), delay)
                self.last_outage = time.monotonic()
                self.remove_session()  # a fresh session next time, not the broken one
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            return result

    return wrapper  # type: ignore[return-value]


def _first_line(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, StorageInternalError) else exc
    orig = getattr(cause, "orig", None) or cause
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


class ResilientRDBStorage(UpsertWrites):
    """RDBStorage whose calls survive a database outage of up to ``outage_seconds``."""

    def __init__(self, url: str, *, outage_seconds: float = 300.0, **kwargs: Any) -> None:
        self.outage_seconds = outage_seconds
        self.last_outage: float | None = None  # time.monotonic() of the last failed attempt
        super().__init__(url, **kwargs)

    def recently_down(self, window: float) -> bool:
        """Whether the database was unreachable in the last ``window`` seconds."""
        return self.last_outage is not None and time.monotonic() - self.last_outage < window


for _name in _RETRIED:
    setattr(ResilientRDBStorage, _name, _retrying(getattr(UpsertWrites, _name)))
