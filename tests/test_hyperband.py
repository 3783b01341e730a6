"""FastHyperbandPruner decides exactly as Optuna's HyperbandPruner, from the same trials.

Two studies with the same name (so the same brackets) in two storages: one pruned by Optuna's
pruner on Optuna's own storage, one by hpo's on a TrialCache. Several trials are in flight at
once, as with parallel workers, and every should_prune answer must agree.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.study._optuna.hyperband import FastHyperbandPruner
from hpo.study._optuna.sql_writes import UpsertWrites
from hpo.study._optuna.trial_cache import TrialCache

EPOCHS = 9


def _studies(tmp_path: Path, direction: str, **pruner: object) -> tuple[optuna.Study, optuna.Study]:
    plain = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'plain.db'}",
        study_name="bracketed",
        direction=direction,
        pruner=optuna.pruners.HyperbandPruner(**pruner),  # type: ignore[arg-type]
    )
    fast = optuna.create_study(
        storage=TrialCache(UpsertWrites(f"sqlite:///{tmp_path / 'fast.db'}")),
        study_name="bracketed",
        direction=direction,
        pruner=FastHyperbandPruner(**pruner),  # type: ignore[arg-type]
    )
    return plain, fast


def _curve(rng: random.Random, nan: bool) -> list[float]:
    quality = rng.choice([0.1, 0.3, 0.3, 0.5, 0.7, 0.9])  # ties are common in real metrics
    values = [round(quality * (1 - 1 / (s + 2)), 2) for s in range(EPOCHS)]
    if nan and rng.random() < 0.1:
        values[rng.randrange(EPOCHS)] = math.nan
    return values


def _drive(
    plain: optuna.Study, fast: optuna.Study, n_trials: int, in_flight: int, seed: int
) -> list[bool]:
    """Run both studies in lockstep; return every decision (asserting they agree)."""
    rng = random.Random(seed)
    running: list[tuple[optuna.Trial, optuna.Trial, list[float], int]] = []
    decisions: list[bool] = []
    started = 0
    while started < n_trials or running:
        while started < n_trials and len(running) < in_flight:
            running.append((plain.ask(), fast.ask(), _curve(rng, nan=True), 0))
            started += 1
        i = rng.randrange(len(running))
        a, b, curve, step = running[i]
        a.report(curve[step], step + 1)
        b.report(curve[step], step + 1)
        pruned = a.should_prune()
        assert b.should_prune() == pruned, f"trial {a.number} step {step + 1}"
        decisions.append(pruned)
        if pruned or step + 1 == EPOCHS:
            state = TrialState.PRUNED if pruned else TrialState.COMPLETE
            if not pruned and rng.random() < 0.05:
                state = TrialState.FAIL
            value = None if state != TrialState.COMPLETE else curve[step]
            plain.tell(a, value, state=state)
            fast.tell(b, value, state=state)
            running.pop(i)
        else:
            running[i] = (a, b, curve, step + 1)
    return decisions


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_same_decisions_as_optuna_with_trials_in_flight(tmp_path: Path, direction: str) -> None:
    plain, fast = _studies(tmp_path, direction, min_resource=1, max_resource=EPOCHS)
    decisions = _drive(plain, fast, n_trials=120, in_flight=4, seed=1)
    assert any(decisions) and not all(decisions)  # the comparison saw both answers


def test_same_decisions_with_reduction_factor_and_bootstrap(tmp_path: Path) -> None:
    plain, fast = _studies(
        tmp_path,
        "maximize",
        min_resource=1,
        max_resource=EPOCHS,
        reduction_factor=2,
        bootstrap_count=2,
    )
    decisions = _drive(plain, fast, n_trials=60, in_flight=3, seed=2)
    assert any(decisions) and not all(decisions)


def test_auto_max_resource_and_min_resource_fall_back_to_optuna(tmp_path: Path) -> None:
    plain, fast = _studies(tmp_path, "maximize")  # min_resource and max_resource "auto"
    _drive(plain, fast, n_trials=40, in_flight=2, seed=3)


def test_reads_each_finished_trial_once(tmp_path: Path) -> None:
    storage = TrialCache(UpsertWrites(f"sqlite:///{tmp_path / 'once.db'}"))
    pruner = FastHyperbandPruner(min_resource=1, max_resource=EPOCHS)
    study = optuna.create_study(storage=storage, direction="maximize", pruner=pruner)
    seen: list[int] = []
    index = pruner._index

    def counting(study: optuna.Study, log: list[optuna.trial.FrozenTrial]) -> None:
        assert pruner._rungs is None or pruner._rungs.cursor <= len(log)
        start = 0 if pruner._rungs is None else pruner._rungs.cursor
        seen.extend(t.number for t in log[start:])
        index(study, log)

    pruner._index = counting  # type: ignore[method-assign]
    for number in range(30):
        trial = study.ask()
        for step in range(1, EPOCHS + 1):
            trial.report(number % 7 + step / 10, step)
            if trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                break
        else:
            study.tell(trial, number % 7 + 1.0)
    assert sorted(seen) == sorted(set(seen))  # never twice
    assert len(seen) >= 25  # and nearly all of them by the end


def test_without_trial_cache_it_is_optunas_pruner(tmp_path: Path) -> None:
    pruner = FastHyperbandPruner(min_resource=1, max_resource=3)
    study = optuna.create_study(direction="maximize", pruner=pruner)  # in-memory storage
    for number in range(12):
        trial = study.ask()
        trial.report(float(number % 4), 1)
        trial.should_prune()
        study.tell(trial, float(number % 4))
    assert pruner._rungs is None  # never indexed: Optuna's code path decided
