"""Taking turns for scarce connections: a worker gives its connection back between trials, and
waits a turn only when the server has at most one to spare."""

from __future__ import annotations

import pytest

from hpo.study import open_storage
from hpo.study.storage import turns


def _pooled(storage) -> int:
    return storage.engine.pool.checkedin()


@pytest.mark.postgres
def test_the_connection_goes_back_between_trials(postgres_url: str) -> None:
    storage = open_storage(postgres_url)
    storage.get_all_studies()
    assert _pooled(storage) == 1, "kept while the worker runs a trial"
    waits: list[float] = []

    assert turns.between_trials(storage, waits.append) is False  # the shared server has room
    assert _pooled(storage) == 0 and waits == []
    storage.get_all_studies()  # the next claim opens a connection again


@pytest.mark.postgres
def test_a_full_server_makes_the_worker_wait_a_turn(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = open_storage(postgres_url)
    monkeypatch.setattr(turns, "free_slots", lambda conn: 1)
    waits: list[float] = []
    assert turns.between_trials(storage, waits.append) is True
    assert len(waits) == 1 and turns.TURN[0] <= waits[0] <= turns.TURN[1]


def test_sqlite_has_no_turns(tmp_path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert turns.between_trials(storage, lambda s: pytest.fail("waited")) is False
