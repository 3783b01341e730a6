"""FastTPESampler suggests exactly what Optuna's TPESampler suggests, from cached trial data.

Each test drives two studies side by side with the same seed and the same scripted outcomes,
one with Optuna's sampler and one with ours, and compares every suggestion bit for bit.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import optuna
import pytest
import sqlalchemy
from optuna.samplers import TPESampler
from optuna.trial import Trial, TrialState

import hpo.study._optuna.tpe as tpe
from hpo.study._optuna.sql_writes import UpsertWrites
from hpo.study._optuna.tpe import FastTPESampler
from hpo.study._optuna.trial_cache import TrialCache

optuna.logging.set_verbosity(optuna.logging.WARNING)

Suggest = Callable[[Trial], dict[str, Any]]


def mixed_space(trial: Trial) -> dict[str, Any]:
    """Float, log float, int with a step, log int and categorical parameters."""
    return {
        "x": trial.suggest_float("x", -5.0, 5.0),
        "lr": trial.suggest_float("lr", 1e-4, 1.0, log=True),
        "n": trial.suggest_int("n", 1, 9, step=2),
        "k": trial.suggest_int("k", 1, 64, log=True),
        "opt": trial.suggest_categorical("opt", ["sgd", "adam", None]),
    }


def conditional_space(trial: Trial) -> dict[str, Any]:
    """Parameters that exist only for one value of ``kind``."""
    params: dict[str, Any] = {"kind": trial.suggest_categorical("kind", ["a", "b"])}
    if params["kind"] == "a":
        params["a"] = trial.suggest_float("a", 0.0, 1.0)
    else:
        params["b"] = trial.suggest_int("b", 0, 10)
    params["c"] = trial.suggest_float("c", 0.1, 10.0, log=True)
    return params


def xy_space(trial: Trial) -> dict[str, Any]:
    return {"x": trial.suggest_float("x", 0, 1), "y": trial.suggest_float("y", 0, 1)}


def value_of(params: dict[str, Any]) -> float:
    """A coarse objective, so that several trials tie."""
    numeric = [float(v) for v in params.values() if isinstance(v, (int, float))]
    return round(sum(abs(v) for v in numeric), 0)


def fast_sqlite(url: str) -> TrialCache:
    """A TrialCache on SQLite without fsync per commit (the tests' time is mostly commits)."""
    backend = UpsertWrites(url)

    @sqlalchemy.event.listens_for(backend.engine, "connect")
    def _no_sync(conn: Any, _: Any) -> None:
        conn.execute("PRAGMA synchronous=OFF")

    backend.engine.dispose()
    return TrialCache(backend)


def pair(
    storages: list[Any],
    direction: Literal["minimize", "maximize"] = "minimize",
    names: tuple[str | None, str | None] = (None, None),
    **kwargs: Any,
) -> list[optuna.Study]:
    """Optuna's sampler on the first storage, ours on the second, same arguments."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecated ``gamma`` argument
        samplers = [TPESampler(**kwargs), FastTPESampler(**kwargs)]
    return [
        optuna.create_study(storage=storage, sampler=sampler, direction=direction, study_name=name)
        for storage, sampler, name in zip(storages, samplers, names, strict=True)
    ]


def caches(study: optuna.Study) -> dict[int, Any]:
    """The per-study caches of the study's FastTPESampler."""
    assert isinstance(study.sampler, FastTPESampler)
    return study.sampler._caches


@pytest.fixture
def sqlite_pair(tmp_path: Path) -> list[TrialCache]:
    return [fast_sqlite(f"sqlite:///{tmp_path / name}.db") for name in ("optuna", "fast")]


def finish(
    studies: list[optuna.Study], trials: list[Trial], rng: random.Random, p: dict[str, float]
) -> None:
    """Give the paired trials one scripted outcome: complete, pruned (with a curve) or failed."""
    draw = rng.random()
    if draw < p.get("prune", 0.4):
        steps = sorted(rng.sample(range(12), rng.randint(0 if rng.random() < 0.1 else 1, 10)))
        curve = [(s, math.nan if rng.random() < 0.2 else round(rng.random(), 1)) for s in steps]
        for study, trial in zip(studies, trials, strict=True):
            for step, value in curve:
                trial.report(value, step)
            study.tell(trial, state=TrialState.PRUNED)
    elif draw < p.get("prune", 0.4) + p.get("fail", 0.05):
        for study, trial in zip(studies, trials, strict=True):
            study.tell(trial, state=TrialState.FAIL)
    else:
        value = value_of(trials[0].params)
        for study, trial in zip(studies, trials, strict=True):
            study.tell(trial, value)


def ask_same(studies: list[optuna.Study], suggest: Suggest) -> list[Trial]:
    """Ask both studies and check they suggest the same parameters, bit for bit."""
    trials = [study.ask() for study in studies]
    params = [suggest(trial) for trial in trials]
    assert repr(params[0]) == repr(params[1]), f"trial {trials[0].number}"
    return trials


def drive(
    studies: list[optuna.Study],
    suggest: Suggest,
    n_trials: int,
    seed: int = 0,
    hold: float = 0.0,
    **p: float,
) -> None:
    """Run ``n_trials`` paired trials; with ``hold`` > 0 some stay RUNNING for a while."""
    rng = random.Random(seed)
    held: list[list[Trial]] = []
    for _ in range(n_trials):
        trials = ask_same(studies, suggest)
        if rng.random() < hold:
            held.append(trials)
        else:
            finish(studies, trials, rng, p)
        while held and rng.random() < 0.3:
            finish(studies, held.pop(rng.randrange(len(held))), rng, p)
    for trials in held:
        finish(studies, trials, rng, p)
    assert [t.params for t in studies[0].trials] == [t.params for t in studies[1].trials]


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
@pytest.mark.parametrize("multivariate", [True, False])
@pytest.mark.parametrize("constant_liar", [True, False])
def test_same_suggestions_as_optuna(
    sqlite_pair: list[TrialCache],
    direction: Literal["minimize", "maximize"],
    multivariate: bool,
    constant_liar: bool,
) -> None:
    studies = pair(
        sqlite_pair,
        direction,
        seed=7,
        n_startup_trials=4,
        multivariate=multivariate,
        constant_liar=constant_liar,
    )
    drive(studies, mixed_space, 26, seed=1, hold=0.3 if constant_liar else 0.0)
    assert caches(studies[1])  # the fast path ran


@pytest.mark.parametrize("constant_liar", [True, False])
def test_conditional_space_with_group(sqlite_pair: list[TrialCache], constant_liar: bool) -> None:
    studies = pair(
        sqlite_pair,
        seed=3,
        n_startup_trials=4,
        multivariate=True,
        group=True,
        constant_liar=constant_liar,
    )
    drive(studies, conditional_space, 26, seed=2, hold=0.3 if constant_liar else 0.0)


def test_mostly_pruned_with_a_large_below_set(sqlite_pair: list[TrialCache]) -> None:
    """Pruned trials fill the below set (ranked by step, then value, NaN last, ties by number)."""
    studies = pair(sqlite_pair, "maximize", seed=5, n_startup_trials=3, gamma=lambda n: n // 2)
    drive(studies, mixed_space, 26, seed=3, hold=0.2, prune=0.8, fail=0.05)


def test_another_worker_finishes_trials_between_suggestions(tmp_path: Path) -> None:
    """Optuna reads a per-trial snapshot without constant liar and the study afresh with it."""
    for constant_liar in (False, True):
        storages = [fast_sqlite(f"sqlite:///{tmp_path}/{n}{constant_liar}.db") for n in "ab"]
        studies = pair(
            storages, seed=11, n_startup_trials=3, multivariate=False, constant_liar=constant_liar
        )
        others = [
            optuna.load_study(
                study_name=study.study_name,
                storage=TrialCache(storage.backend),
                sampler=optuna.samplers.RandomSampler(seed=1),
            )
            for study, storage in zip(studies, storages, strict=True)
        ]
        rng = random.Random(4)
        for _ in range(14):
            trials = ask_same(studies, lambda t: {"x": t.suggest_float("x", 0, 1)})
            finish(others, ask_same(others, xy_space), rng, {"prune": 0.5})
            for study in studies:
                assert study.trials  # a read in between: the cache learns of the new trial
            y = [t.suggest_float("y", 0, 1) for t in trials]
            assert repr(y[0]) == repr(y[1])
            finish(studies, trials, rng, {"prune": 0.3})


def test_each_finished_trial_is_read_once(
    sqlite_pair: list[TrialCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    scored: list[int] = []

    def score(trial: optuna.trial.FrozenTrial, study: optuna.Study) -> tuple[float, float]:
        scored.append(trial.number)
        return optuna.samplers._tpe.sampler._get_pruned_trial_score(trial, study)

    monkeypatch.setattr(tpe, "_get_pruned_trial_score", score)
    studies = pair(sqlite_pair, seed=1, n_startup_trials=3)
    drive(studies, mixed_space, 20, seed=6, hold=0.2, prune=0.6)
    ask_same(studies, mixed_space)  # reads the last trials told
    fast = studies[1]
    cache = caches(fast)[fast._study_id]
    log = sqlite_pair[1].finished_log(fast._study_id)
    pruned = [t.number for t in fast.trials if t.state == TrialState.PRUNED]
    assert sorted(scored) == pruned  # each pruned trial scored exactly once
    assert cache.cursor == len(log) == len(cache.considered_before) - 1
    assert len(cache.trials) == len({t.number for t in cache.trials})


def test_constraints_and_other_storages_use_optuna(sqlite_pair: list[TrialCache]) -> None:
    """In-memory studies and constrained ones go through Optuna's code and still match."""
    memory = [optuna.storages.InMemoryStorage() for _ in range(2)]
    studies = pair(memory, seed=2, n_startup_trials=3)
    drive(studies, mixed_space, 16, seed=8, hold=0.2)
    assert not caches(studies[1])

    studies = pair(sqlite_pair, seed=2, n_startup_trials=3)
    rng = random.Random(8)
    for i in range(16):
        trials = ask_same(studies, mixed_space)
        if i == 8:
            for trial in trials:
                trial.set_constraint("c", 1.0 if i % 2 else -1.0)
        finish(studies, trials, rng, {"prune": 0.3})
    fast = studies[1]
    assert caches(fast)[fast._study_id].constrained


@pytest.mark.postgres
def test_same_suggestions_on_postgres(postgres_url: str, unique_name: str) -> None:
    backend = UpsertWrites(postgres_url)
    storages = [TrialCache(backend), TrialCache(UpsertWrites(postgres_url))]
    names = (f"{unique_name}-optuna", f"{unique_name}-fast")
    studies = pair(storages, names=names, seed=9, n_startup_trials=4)
    try:
        drive(studies, mixed_space, 24, seed=9, hold=0.3, prune=0.5)
    finally:
        for name in names:
            optuna.delete_study(study_name=name, storage=backend)
