"""The trial budget in the storage: exact counts, claims that never create, grid points once."""

from __future__ import annotations

import multiprocessing as mp

import optuna
from conftest import tiny_spec
from optuna.trial import TrialState

from hpo.spec import StudySpec
from hpo.study import budget_used, claim, get_budget, next_trial, prepare, requeue
from hpo.study.claims.budget import POOL


def _spec(**overrides: object) -> StudySpec:
    return StudySpec.model_validate(tiny_spec(**overrides))


def test_prepare_tops_up_to_budget_once(sqlite_url: str) -> None:
    spec = _spec(budget={"n_trials": 5})
    first = prepare(spec, sqlite_url)
    again = prepare(spec, sqlite_url)
    assert first.created and not again.created
    assert len(again.study.trials) == 5
    assert all(t.state == TrialState.WAITING for t in again.study.trials)
    assert len(prepare(spec, sqlite_url, n_trials=7).study.trials) == 7


def test_pool_refills_to_the_budget_and_no_further(sqlite_url: str) -> None:
    spec = _spec(budget={"n_trials": 20})
    handle = prepare(spec, sqlite_url)
    numbers = []
    while (trial := next_trial(handle.study, handle.storage, spec)) is not None:
        numbers.append(trial.number)
        handle.study.tell(trial, 0.5)
    assert numbers == list(range(20))
    assert len(handle.study.trials) == 20


def test_claim_never_creates_a_trial(sqlite_url: str) -> None:
    study = prepare(_spec(budget={"n_trials": 2}), sqlite_url).study
    claimed = [claim(study), claim(study), claim(study)]
    assert claimed[2] is None
    assert {t.number for t in claimed[:2]} == {0, 1}  # type: ignore[union-attr]
    assert len(study.trials) == 2


def _claim_all(url: str, name: str, out: mp.Queue) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from hpo.study import open_storage

    storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage)
    spec = _spec(name=name, budget={"n_trials": 40})
    got = []
    while (trial := next_trial(study, storage, spec)) is not None:
        got.append(trial.number)
        waiting = study._storage.get_n_trials(study._study_id, state=TrialState.WAITING)
        assert waiting <= POOL
    out.put(got)


def test_concurrent_claims_and_refills_on_sqlite_run_the_exact_budget(sqlite_url: str) -> None:
    handle = prepare(_spec(name="race", budget={"n_trials": 40}), sqlite_url)
    assert len(handle.study.trials) == POOL  # a small pool, refilled on demand
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(sqlite_url, "race", out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    claimed = [n for r in results for n in r]
    assert sorted(claimed) == list(range(40))


def test_grid_points_enqueued_once_with_fixed_params(sqlite_url: str) -> None:
    spec = _spec(
        sampler={"type": "grid"},
        budget={},
        space={
            "lr": {"type": "float", "values": [0.01, 0.1]},
            "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
        },
    )
    prepare(spec, sqlite_url)
    study = prepare(spec, sqlite_url).study
    fixed = [t.system_attrs["fixed_params"] for t in study.trials]
    assert len(fixed) == 6
    assert {(p["lr"], p["batch_size"]) for p in fixed} == {
        (lr, bs) for lr in (0.01, 0.1) for bs in (16, 32, 64)
    }


def test_retry_does_not_count_against_budget(sqlite_url: str) -> None:
    handle = prepare(_spec(budget={"n_trials": 2}), sqlite_url)
    trial = claim(handle.study)
    assert trial is not None
    trial.suggest_float("lr", 0.01, 0.5, log=True)
    requeue(handle.study, trial._trial_id, "worker died", max_retries=2)
    trials = handle.study.get_trials()
    assert len(trials) == 3 and budget_used(trials) == 2
    retry = trials[-1]
    assert retry.state == TrialState.WAITING and retry.params == trial.params
    assert trials[0].user_attrs["fail_reason"] == "worker died"
    assert len(prepare(_spec(budget={"n_trials": 2}), sqlite_url).study.trials) == 3


def test_budget_only_grows(sqlite_url: str, caplog) -> None:
    spec = _spec(budget={"n_trials": 3})
    prepare(spec, sqlite_url, n_trials=7)
    study = prepare(spec, sqlite_url, n_trials=4).study  # an explicit lower budget is kept at 7
    assert get_budget(study) == 7
    assert "already has a budget of 7 trials, which is kept" in caplog.text
    assert get_budget(prepare(spec, sqlite_url).study) == 7  # the spec's 3 changes nothing
    assert get_budget(prepare(spec, sqlite_url, n_trials=9).study) == 9


def test_each_worker_registration_is_a_new_number(sqlite_url: str) -> None:
    from hpo.study import load, register_worker

    spec = _spec(budget={"n_trials": 2})
    handle = prepare(spec, sqlite_url)
    numbers = [load(spec, sqlite_url).worker_number for _ in range(3)]
    numbers.append(register_worker(handle.storage, handle.study._study_id, spec.name))
    assert numbers == [0, 1, 2, 3]


def test_embedded_storage_in_a_directory_that_does_not_exist_yet(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'runs' / 'a' / 'hpo.db'}"
    assert prepare(_spec(budget={"n_trials": 2}), url).created
