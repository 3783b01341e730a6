"""Riding out a database outage: which errors mean "unreachable for now", and the retry loop.

Every storage call is retried with exponential backoff while the database is unreachable. One
clock per outage and process (:data:`OUTAGE`): it starts with the first call that fails and stops
at the first call that succeeds, so ``outage_seconds`` bounds the time from the first failure to
the :class:`StorageError` (one line), whatever calls follow, not the time of each call.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy.exc
from optuna.exceptions import StorageInternalError

from hpo.errors import StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A lost connection shows as OperationalError / InterfaceError; a session that was mid-transaction
#: when it was lost then refuses to reconnect until rolled back (PendingRollbackError).
_CONNECTION_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.PendingRollbackError,
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


#: The server is full: a slot frees when another client disconnects.
_NO_SLOTS = re.compile(r"too many clients|remaining connection slots", re.IGNORECASE)


def is_busy_server(exc: BaseException) -> bool:
    """A connection error worth waiting for when opening the storage (too many clients)."""
    return is_connection_error(exc) and bool(_BUSY.search(first_line(exc)))


class OutageClock:
    """When this process's current outage began: set by the first failed storage call (at the
    time that call started), cleared by any call that succeeds; shared by all threads. Also
    when the last outage ended (its first successful call), so that nothing is judged on
    heartbeats that could not be written during it."""

    def __init__(self) -> None:
        self._since: float | None = None
        self._ended: float | None = None
        self._lock = threading.Lock()

    def failed(self, call_started: float) -> float:
        """A call that started at ``call_started`` failed: seconds since the outage began."""
        with self._lock:
            if self._since is None:
                self._since = call_started
            return time.monotonic() - self._since

    def recovered(self) -> None:
        with self._lock:
            if self._since is not None:
                self._ended = time.monotonic()
            self._since = None

    def settled(self, window: float) -> bool:
        """No outage now, and none ended in the last ``window`` seconds."""
        with self._lock:
            if self._since is not None:
                return False
            return self._ended is None or time.monotonic() - self._ended >= window


#: The process's outage clock (a worker, or ``hpo run`` itself).
OUTAGE = OutageClock()


def ride_out(
    call: Callable[[], T],
    outage_seconds: float,
    on_failure: Callable[[], None] = lambda: None,
    retryable: Callable[[BaseException], bool] = is_connection_error,
    clock: OutageClock | None = None,
    max_delay: float = 5.0,
    quiet: bool = False,
) -> T:
    """``call()``, retried with backoff while the database is unreachable or refuses clients.

    Args:
        max_delay: the longest wait between two tries (a heartbeat tries every second, to be
            written as soon as the database is back).
        quiet: no warning for each retry (the caller says once what it could not do).

    Raises:
        StorageError: still unreachable ``outage_seconds`` after the outage's first failed call
            (one line, no traceback).
    """
    clock = clock or OUTAGE  # the process's, looked up at each call
    delay, warned = 0.2, False
    while True:
        started = time.monotonic()
        try:
            result = call()
        except (StorageInternalError, *_CONNECTION_ERRORS, sqlalchemy.exc.DBAPIError) as exc:
            if not retryable(exc):
                raise
            waited = clock.failed(started)
            if waited + delay > outage_seconds:
                raise StorageError(
                    f"storage unreachable for {waited:.0f} s (retry.storage_outage "
                    f"{outage_seconds:.0f} s): {first_line(exc)}"
                ) from None
            no_slots = bool(_NO_SLOTS.search(first_line(exc)))
            if not quiet and not (no_slots and warned):  # a wait for a slot: said once a call
                warned = True
                log.warning(
                    "storage unreachable (%s); retrying for up to %.0f s more",
                    first_line(exc),
                    outage_seconds - waited,
                )
            on_failure()
            if no_slots:
                # Waiting for a slot another worker gives back between trials (``turns``):
                # asked about once a second, jittered, whatever the backoff has reached.
                time.sleep(random.uniform(0.25, 1.0))
                continue
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
        else:
            clock.recovered()
            return result


def first_line(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, StorageInternalError) else exc
    orig = getattr(cause, "orig", None) or cause
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
