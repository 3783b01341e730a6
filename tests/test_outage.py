"""The outage clock: ``retry.storage_outage`` bounds an outage, not each storage call."""

from __future__ import annotations

import time

import pytest
import sqlalchemy.exc

from hpo.errors import StorageError
from hpo.study.storage.outage import OutageClock, ride_out


def _down() -> None:
    raise sqlalchemy.exc.OperationalError(
        "SELECT 1", {}, Exception("server closed the connection unexpectedly")
    )


def _timed_failure(clock: OutageClock, outage: float) -> float:
    started = time.monotonic()
    with pytest.raises(StorageError, match="storage unreachable"):
        ride_out(_down, outage, clock=clock)
    return time.monotonic() - started


def test_calls_after_the_first_failure_share_its_clock() -> None:
    """Each call restarted a clock of its own: with storage_outage 30 a 100-s cut ended the
    node only ~72 s after the cut (the issue's two runs)."""
    clock = OutageClock()
    first = _timed_failure(clock, 1.0)
    assert 0.5 < first < 1.5
    assert _timed_failure(clock, 1.0) < 0.3, "the outage's time is spent: fail at once"
    assert ride_out(lambda: "up", 1.0, clock=clock) == "up"  # a success ends the outage
    assert _timed_failure(clock, 1.0) > 0.5, "a new outage gets the whole window again"


def test_a_failure_counts_from_when_its_call_began() -> None:
    """A call that hangs (a dropped link) before failing counts its hanging time too."""
    clock = OutageClock()

    def hangs_then_fails() -> None:
        time.sleep(0.6)
        _down()

    started = time.monotonic()
    with pytest.raises(StorageError):
        ride_out(hangs_then_fails, 1.0, clock=clock)
    assert time.monotonic() - started < 1.9
