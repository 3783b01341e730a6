"""TrialReads builds exactly the trials Optuna's RDBStorage builds, in two statements."""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Iterator

import optuna
import pytest
from conftest import sql_statements as statements
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import RDBStorage
from optuna.trial import TrialState, create_trial

from hpo.study._optuna.sql_reads import TrialReads
from hpo.study._optuna.sql_writes import UpsertWrites
from hpo.study._optuna.trial_cache import TrialCache


def _fill(study: optuna.Study) -> None:
    dists = {
        "lr": FloatDistribution(1e-4, 1.0, log=True),
        "layers": IntDistribution(1, 8),
        "opt": CategoricalDistribution(["sgd", "adam", None]),
    }
    for i in range(12):
        state = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL][i % 3]
        value = [0.5, math.inf, -math.inf, 1e-300][i % 4] if state == TrialState.COMPLETE else None
        study.add_trial(
            create_trial(
                state=state,
                value=value,
                params={"lr": 10 ** -(i % 4), "layers": i % 8 + 1, "opt": [None, "sgd"][i % 2]},
                distributions=dists,
                intermediate_values={1: 0.25, 2: math.nan, 3: math.inf, 10 + i: -1.5},
                user_attrs={"node": f"n{i}", "nested": {"a": [1, 2]}},
                system_attrs={"completed_rung_0": 0.25, "fixed_params": {"lr": 0.1}},
            )
        )
    study.enqueue_trial({"lr": 0.01})
    running = study.ask()  # takes the enqueued trial: running, one param fixed, one suggested
    running.suggest_int("layers", 1, 8)


def _fields(trial: optuna.trial.FrozenTrial) -> list[str]:
    """Every field, as text (NaN is unequal to itself), dicts in key order (Optuna's own order
    of attrs depends on the database: insertion order on PostgreSQL, key order on SQLite)."""
    return [
        repr(sorted(v.items(), key=repr)) if isinstance(v, dict) else repr(v)
        for v in (
            trial.number,
            trial.state,
            trial.values,
            trial.datetime_start,
            trial.datetime_complete,
            trial.params,
            trial.distributions,
            trial.user_attrs,
            trial.system_attrs,
            trial.intermediate_values,
            trial._trial_id,
        )
    ]


def test_same_trials_as_optuna(db_url: str, unique_name: str) -> None:
    study = optuna.create_study(storage=db_url, study_name=unique_name)
    _fill(study)
    plain, ours = RDBStorage(db_url), TrialReads(db_url)
    for states, included, greater in [
        (None, set(), -1),
        ((TrialState.COMPLETE, TrialState.RUNNING), set(), -1),
        (None, set(), 10**9),  # nothing newer
    ]:
        ids = {t._trial_id for t in plain._get_trials(study._study_id, None, set(), -1)}
        for inc, gt in [(included, greater), (set(sorted(ids)[:3]), sorted(ids)[6])]:
            expected = plain._get_trials(study._study_id, states, inc, gt)
            got = ours._get_trials(study._study_id, states, inc, gt)
            assert [_fields(t) for t in got] == [_fields(t) for t in expected]
    assert len(ours._get_trials(study._study_id, None, set(), -1)) == 13


def test_two_statements_whatever_the_number_of_trials(db_url: str, unique_name: str) -> None:
    study = optuna.create_study(storage=db_url, study_name=unique_name)
    _fill(study)
    ours = TrialReads(db_url)
    with statements() as seen:
        assert len(ours._get_trials(study._study_id, None, set(), -1)) == 13
    assert len(seen) == 2


def test_missing_study_raises_key_error(db_url: str) -> None:
    ours = TrialReads(db_url)
    with pytest.raises(KeyError):
        ours._get_trials(10**8, None, set(), -1)


@pytest.fixture
def kolkata(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A node whose local time is not UTC (+05:30)."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_times_are_stored_utc_and_read_local(kolkata: None, db_url: str, unique_name: str) -> None:
    cache = TrialCache(UpsertWrites(db_url))
    study = optuna.create_study(storage=cache, study_name=unique_name)
    study.enqueue_trial({})
    trial_id = cache.claim(study._study_id)  # writes datetime_start itself
    assert trial_id is not None
    mine = cache.get_trial(trial_id).datetime_start
    theirs = RDBStorage(db_url).get_trial(trial_id).datetime_start
    ours = TrialReads(db_url)._get_trials(study._study_id, None, set(), -1)[0].datetime_start
    assert mine is not None and theirs is not None and ours is not None
    assert abs((mine - datetime.datetime.now()).total_seconds()) < 60  # local, not UTC
    assert theirs == ours == mine.replace(microsecond=theirs.microsecond)
