"""An RDBStorage that rides out database restarts and dropped connections.

Every storage call is retried with exponential backoff while the database is unreachable, for up
to ``outage_seconds``; after that a :class:`StorageError` says so in one line. The calls hpo
makes are idempotent on retry (reports, attributes and heartbeats overwrite; a state change that
already went through raises ``UpdateFinishedTrialError``, which the worker expects).
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy.exc
from optuna.exceptions import StorageInternalError

from hpo.errors import StorageError
from hpo.study._optuna.sql_writes import UpsertWrites

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

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


#: Connection errors that no wait will cure: fail at once instead of riding them out.
_PERMANENT = re.compile(
    r"authentication failed|password|does not exist|could not translate host name|"
    r"no pg_hba.conf entry|role .* is not permitted",
    re.IGNORECASE,
)


def is_connection_error(exc: BaseException) -> bool:
    """True for a lost or refused database connection (also "too many clients"), also when
    Optuna wrapped it; False for errors that waiting will not cure (a wrong password)."""
    if isinstance(exc, StorageInternalError):
        exc = exc.__cause__ or exc
    if _PERMANENT.search(str(getattr(exc, "orig", None) or exc)):
        return False
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _CONNECTION_ERRORS)


#: Connecting, these mean a server that is there but busy, starting or out of reach for now:
#: worth waiting for. A refused connection at the first connect is more likely a wrong port.
_BUSY = re.compile(
    r"too many clients|remaining connection slots|starting up|shutting down|recovery mode|"
    r"timeout expired|timed out",
    re.IGNORECASE,
)


def is_busy_server(exc: BaseException) -> bool:
    """A connection error worth waiting for when opening the storage (too many clients)."""
    return is_connection_error(exc) and bool(_BUSY.search(_first_line(exc)))


def ride_out(
    call: Callable[[], T],
    outage_seconds: float,
    on_failure: Callable[[], None] = lambda: None,
    retryable: Callable[[BaseException], bool] = is_connection_error,
) -> T:
    """``call()``, retried with backoff while the database is unreachable or refuses clients.

    Raises:
        StorageError: still unreachable after ``outage_seconds`` (one line, no traceback).
    """
    delay, started = 0.2, time.monotonic()
    while True:
        try:
            return call()
        except (StorageInternalError, *_CONNECTION_ERRORS, sqlalchemy.exc.DBAPIError) as exc:
            if not retryable(exc):
                raise
            waited = time.monotonic() - started
            if waited + delay > outage_seconds:
                raise StorageError(
                    f"storage unreachable for {waited:.0f} s (retry.storage_outage "
                    f"{outage_seconds:.0f} s): {_first_line(exc)}"
                ) from None
            log.warning(
                "storage unreachable (%s); retrying for up to %.0f s more",
                _first_line(exc),
                outage_seconds - waited,
            )
            on_failure()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _retrying(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return ride_out(
            lambda: method(self, *args, **kwargs), self.outage_seconds, self._after_failure
        )

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
        try:
            _retrying(UpsertWrites.record_heartbeat)(self, trial_id)
        except StorageError as exc:
            log.warning("heartbeat of trial id %d not recorded: %s", trial_id, exc)

    def recently_down(self, window: float) -> bool:
        """Whether the database was unreachable in the last ``window`` seconds."""
        return self.last_outage is not None and time.monotonic() - self.last_outage < window


for _name in _RETRIED:
    setattr(ResilientRDBStorage, _name, _retrying(getattr(UpsertWrites, _name)))
