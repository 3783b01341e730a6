"""TrialCache and the one-statement writes, on the real PostgreSQL and on SQLite."""

from __future__ import annotations

import threading

import optuna
import pytest
from conftest import sql_statements as statements
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from hpo.study._optuna.sql_writes import UpsertWrites
from hpo.study._optuna.trial_cache import TrialCache


@pytest.fixture
def url(db_url: str) -> str:
    return db_url


def _study(url: str, name: str) -> tuple[optuna.Study, TrialCache]:
    cache = TrialCache(UpsertWrites(url))
    return optuna.create_study(storage=cache, study_name=name, load_if_exists=True), cache


def test_running_trial_is_written_at_once_and_read_locally(url: str, unique_name: str) -> None:
    study, cache = _study(url, unique_name)
    study.enqueue_trial({"x": 0.5})
    trial_id = cache.claim(study._study_id)
    assert trial_id is not None
    trial = optuna.Trial(study, trial_id)
    trial.suggest_float("x", 0, 1)
    with statements() as seen:
        trial.report(0.25, 1)
        cache.set_trial_system_attr(trial_id, "completed_rung_0", 0.25)
        cache.set_trial_user_attrs(trial_id, {"node": "a", "worker": 1})
    assert len(seen) == 3  # one statement per write, no reads
    with statements() as seen:
        got = cache.get_trial(trial_id)
        attrs = cache.get_trial_system_attrs(trial_id)
    assert seen == []
    assert got.intermediate_values == {1: 0.25} and attrs["completed_rung_0"] == 0.25
    assert got.user_attrs == {"node": "a", "worker": 1} and got.params == {"x": 0.5}
    stored = optuna.load_study(study_name=unique_name, storage=url).trials[0]
    assert stored.intermediate_values == {1: 0.25}  # in the database, not only in the copy
    assert stored.user_attrs == {"node": "a", "worker": 1}
    assert stored.system_attrs["completed_rung_0"] == 0.25


def test_trial_failed_by_another_process_refuses_writes(url: str, unique_name: str) -> None:
    study, cache = _study(url, unique_name)
    study.enqueue_trial({})
    trial_id = cache.claim(study._study_id)
    assert trial_id is not None
    other = optuna.load_study(study_name=unique_name, storage=url)
    other._storage.set_trial_state_values(trial_id, TrialState.FAIL)  # e.g. judged stale
    with pytest.raises(UpdateFinishedTrialError):
        cache.set_trial_intermediate_value(trial_id, 1, 0.5)
    assert cache.get_trial(trial_id).state == TrialState.FAIL  # no longer answered locally


def test_concurrent_claims_take_each_waiting_trial_once(
    postgres_url: str, unique_name: str
) -> None:
    study, _ = _study(postgres_url, unique_name)
    for i in range(40):
        study.enqueue_trial({"i": i})
    claimed: list[int] = []

    def worker() -> None:
        cache = TrialCache(UpsertWrites(postgres_url))
        study_id = cache.get_study_id_from_name(unique_name)
        while (trial_id := cache.claim(study_id)) is not None:
            claimed.append(trial_id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 40 and len(set(claimed)) == 40
    states = {
        t.state for t in optuna.load_study(study_name=unique_name, storage=postgres_url).trials
    }
    assert states == {TrialState.RUNNING}


def test_finished_log_holds_each_finished_trial_once(url: str, unique_name: str) -> None:
    study, cache = _study(url, unique_name)
    other = optuna.load_study(study_name=unique_name, storage=url)
    mine = study.ask()
    theirs = other.ask()
    other.tell(theirs, 1.0)
    study.tell(mine, 2.0)  # finished here: logged at once
    log = cache.finished_log(study._study_id)
    assert [t.number for t in log] == [mine.number]
    cache.refresh(study._study_id)  # reads the other process's trial, and ours from the database
    assert sorted(t.number for t in log) == [mine.number, theirs.number]
    assert [t.number for t in study.get_trials(states=(TrialState.COMPLETE,))] == [0, 1]


def test_reads_by_state_match_optunas_cache(url: str, unique_name: str) -> None:
    study, cache = _study(url, unique_name)
    for i in range(6):
        trial = study.ask()
        if i % 3 == 0:
            study.tell(trial, float(i))
        elif i % 3 == 1:
            study.tell(trial, state=TrialState.PRUNED)
    study.enqueue_trial({})
    plain = optuna.load_study(study_name=unique_name, storage=url)
    for states in (None, (TrialState.WAITING,), (TrialState.RUNNING,), (TrialState.COMPLETE,)):
        ours = [(t.number, t.state) for t in study.get_trials(deepcopy=False, states=states)]
        theirs = [(t.number, t.state) for t in plain.get_trials(deepcopy=False, states=states)]
        assert ours == theirs, states


def test_rung_values_of_unlogged_trials_in_one_query(url: str, unique_name: str) -> None:
    study, cache = _study(url, unique_name)
    done = study.ask()
    cache.set_trial_system_attr(done._trial_id, "completed_rung_0", 0.1)
    study.tell(done, 0.1)
    running = study.ask()
    cache.set_trial_system_attr(running._trial_id, "completed_rung_0", 0.3)
    cache.refresh(study._study_id)
    with statements() as seen:
        rows = cache.unlogged_system_attrs(study._study_id, "completed_rung_%")
    assert len(seen) == 1
    assert [(number, key, value) for _, number, key, value in rows] == [
        (running.number, "completed_rung_0", 0.3)
    ]


def test_bulk_enqueue_writes_what_enqueue_trial_writes(url: str, unique_name: str) -> None:
    study, cache = _study(url, unique_name)
    study.enqueue_trial({"x": 1})
    with statements() as seen:
        cache.backend.enqueue_waiting(study._study_id, [{"x": 2}, {"x": 3}, {}])
    if cache.backend.engine.name == "postgresql":  # SQLite inserts row by row to return ids
        assert len(seen) == 4  # lock the study row, count, insert trials, insert their params
    stored = optuna.load_study(study_name=unique_name, storage=url).trials
    assert [(t.number, t.state, t.system_attrs) for t in stored] == [
        (0, TrialState.WAITING, {"fixed_params": {"x": 1}}),
        (1, TrialState.WAITING, {"fixed_params": {"x": 2}}),
        (2, TrialState.WAITING, {"fixed_params": {"x": 3}}),
        (3, TrialState.WAITING, {"fixed_params": {}}),
    ]
    trial_id = cache.claim(study._study_id)
    assert trial_id is not None and cache.get_trial(trial_id).params == {}
    assert optuna.Trial(study, trial_id).suggest_int("x", 0, 9) == 1  # fixed, as enqueued


def test_bulk_enqueue_numbers_trials_beside_optuna_processes(
    postgres_url: str, unique_name: str
) -> None:
    study, cache = _study(postgres_url, unique_name)
    plain = optuna.load_study(study_name=unique_name, storage=postgres_url)

    def creates() -> None:  # Optuna's own trial creation, numbered under the same lock
        for _ in range(30):
            plain.enqueue_trial({})

    thread = threading.Thread(target=creates)
    thread.start()
    for _ in range(10):
        cache.backend.enqueue_waiting(study._study_id, [{}, {}, {}])
    thread.join()
    numbers = sorted(t.number for t in study.get_trials(deepcopy=False))
    assert numbers == list(range(60))
