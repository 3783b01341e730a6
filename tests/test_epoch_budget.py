"""The epoch budget (``budget.max_epochs_total``): epochs counted in the storage over every worker
and node, no claim once it is spent, a running trial stopped at its next epoch boundary (PRUNED,
``stop_reason``), no trial limit needed, ``hpo validate`` and ``hpo status`` saying so."""

from __future__ import annotations

import io
import re
import threading
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import TINY_TRAIN, sql_statements, tiny_spec
from optuna.trial import TrialState
from rich.console import Console
from typer.testing import CliRunner

from hpo.cli import app
from hpo.dispatch import WorkerPlan
from hpo.progress import LiveProgress
from hpo.spec import StudySpec
from hpo.study import EPOCH_BUDGET_SPENT, EpochCount, Snapshot, get_budget, prepare, system_attrs
from hpo.study.claims.budget import POOL
from hpo.study.claims.epochs import ATTR_EPOCHS, epoch_count
from hpo.worker import WorkerContext, run_worker

runner = CliRunner()

#: The trainer at its smallest: the small CNN on 8x8 synthetic images (no scikit-learn import).
TRAIN = {**TINY_TRAIN, "dataset": "fake", "fake_samples": 96, "image_size": 8, "num_classes": 3}

#: hpo's ``fn(params, report)`` form: 4 epochs of a few milliseconds each.
PARAMS_FORM = """
import time


def objective(params, report):
    for step in range(1, 5):
        time.sleep(0.02)
        report(params["x"] + step, step)
"""

#: Optuna's ``fn(trial)`` form, reporting through ``trial.report`` (hpo's fast report path).
TRIAL_FORM = """
import optuna


def objective(trial):
    for step in range(1, 4):
        trial.report(trial.params["x"] * step, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return trial.params["x"]
"""


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    name = f"epochs_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _objective_spec(name: str, ref: str, budget: dict[str, int]) -> dict[str, Any]:
    return {
        "name": name,
        "objective": ref,
        "metric": {"name": "score"},
        "sampler": {"type": "random", "seed": 0},
        "pruner": {"type": "none"},
        "budget": budget,
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
    }


def _work(spec: StudySpec, url: str, tmp_path: Path) -> tuple[int, list[dict[str, Any]]]:
    """One worker, in this process, until it stops; its exit code and events."""
    events: list[dict[str, Any]] = []
    ctx = WorkerContext(spec=spec, storage_url=url, artifacts=str(tmp_path / "art"))
    return run_worker(ctx, threading.Event(), events.append), events


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


def _count(url: str, name: str) -> tuple[int, int] | None:
    found = epoch_count(optuna.load_study(study_name=name, storage=url))
    return None if found is None else (found.used, found.budget)


def _stopped_by_budget(trial: optuna.trial.FrozenTrial) -> bool:
    return trial.user_attrs.get("stop_reason") == EPOCH_BUDGET_SPENT


def test_trial_form_stops_at_the_epoch_boundary_that_spends_the_budget(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = f"{_module(tmp_path, monkeypatch, TRIAL_FORM)}:objective"
    spec = StudySpec.model_validate(
        _objective_spec("trialform", ref, {"n_trials": 5, "max_epochs_total": 5})
    )
    prepare(spec, sqlite_url)

    code, events = _work(spec, sqlite_url, tmp_path)

    assert code == 0
    assert [e for e in events if e["event"] == "epoch_budget_spent"] == [
        {"event": "epoch_budget_spent", "used": 5, "budget": 5}
    ]
    first, second, *rest = _trials(sqlite_url, "trialform")
    assert first.state == TrialState.COMPLETE and sorted(first.intermediate_values) == [1, 2, 3]
    # One worker: exactly the budget. The trial that spent it stops there, its epochs kept.
    assert second.state == TrialState.PRUNED and sorted(second.intermediate_values) == [1, 2]
    assert _stopped_by_budget(second) and "5/5 epochs" in second.user_attrs["fail_reason"]
    assert second.value == second.intermediate_values[2]  # the sampler sees where it stopped
    assert rest and all(t.state == TrialState.WAITING for t in rest)  # never claimed
    assert _count(sqlite_url, "trialform") == (5, 5)


def test_the_trial_budget_ends_the_study_when_it_is_spent_first(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = f"{_module(tmp_path, monkeypatch, TRIAL_FORM)}:objective"
    spec = StudySpec.model_validate(
        _objective_spec("trialsfirst", ref, {"n_trials": 2, "max_epochs_total": 100})
    )
    prepare(spec, sqlite_url)

    code, events = _work(spec, sqlite_url, tmp_path)

    assert code == 0 and not [e for e in events if e["event"] == "epoch_budget_spent"]
    trials = _trials(sqlite_url, "trialsfirst")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert _count(sqlite_url, "trialsfirst") == (6, 100)


def test_a_resumed_trainer_trial_counts_the_epochs_it_trains_not_those_it_replays(
    sqlite_url: str, tmp_path: Path, one_thread: None
) -> None:
    spec = StudySpec.model_validate(
        tiny_spec(
            "resumed",
            budget={"n_trials": 1, "max_epochs_total": 100},
            train={**TRAIN, "epochs": 2},
        )
    )
    prepare(spec, sqlite_url)
    stop = threading.Event()

    def preempt_after_epoch_1(event: dict[str, Any]) -> None:
        if event["event"] == "epoch":
            stop.set()  # SIGTERM: the trial is handed back after this epoch, for a retry

    ctx = WorkerContext(spec=spec, storage_url=sqlite_url, artifacts=str(tmp_path / "art"))
    assert run_worker(ctx, stop, preempt_after_epoch_1) == 130
    assert _count(sqlite_url, "resumed") == (1, 100)
    assert _work(spec, sqlite_url, tmp_path)[0] == 0

    first, retry = _trials(sqlite_url, "resumed")
    assert first.state == TrialState.FAIL and sorted(first.intermediate_values) == [1]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["resumed_from_epoch"] == 1
    assert sorted(retry.intermediate_values) == [1, 2]  # epoch 1 replayed, epoch 2 trained
    assert _count(sqlite_url, "resumed") == (2, 100)


def test_a_trainer_trial_is_pruned_mid_run_when_the_budget_is_spent(
    sqlite_url: str, tmp_path: Path, one_thread: None
) -> None:
    spec = StudySpec.model_validate(
        tiny_spec(
            "midrun",
            budget={"n_trials": 3, "max_epochs_total": 3},
            train={**TRAIN, "epochs": 2},
        )
    )
    prepare(spec, sqlite_url)

    assert _work(spec, sqlite_url, tmp_path)[0] == 0

    first, second, third = _trials(sqlite_url, "midrun")
    assert first.state == TrialState.COMPLETE and sorted(first.intermediate_values) == [1, 2]
    assert second.state == TrialState.PRUNED and _stopped_by_budget(second)
    assert sorted(second.intermediate_values) == [1] and second.user_attrs["epochs_run"] == 1
    assert third.state == TrialState.WAITING


def test_a_trainer_trial_whose_own_last_epoch_spends_the_budget_completes(
    sqlite_url: str, tmp_path: Path, one_thread: None
) -> None:
    spec = StudySpec.model_validate(
        tiny_spec(
            "lastepoch",
            budget={"n_trials": 3, "max_epochs_total": 4},
            space={"epochs": {"type": "categorical", "choices": [2]}},  # tuned: not train's 3
            train=TRAIN,
        )
    )
    prepare(spec, sqlite_url)

    assert _work(spec, sqlite_url, tmp_path)[0] == 0

    first, second, third = _trials(sqlite_url, "lastepoch")
    assert [first.state, second.state] == [TrialState.COMPLETE] * 2  # epoch 4 of 4 was its last
    assert sorted(second.intermediate_values) == [1, 2] and not _stopped_by_budget(second)
    assert third.state == TrialState.WAITING and _count(sqlite_url, "lastepoch") == (4, 4)


def test_budgets_in_the_storage_only_grow_and_an_epoch_budget_needs_no_trial_limit(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    def spec(**budget: int) -> StudySpec:
        return StudySpec.model_validate(tiny_spec("grow", budget=budget))

    prepare(spec(n_trials=2), sqlite_url)
    study = prepare(spec(max_epochs_total=10), sqlite_url).study

    assert get_budget(study) is None  # the trial limit is lifted: the pool stays full
    assert sum(t.state == TrialState.WAITING for t in study.trials) == POOL
    assert _count(sqlite_url, "grow") == (0, 10)
    prepare(spec(n_trials=2), sqlite_url)  # a spec with a trial limit does not bring one back
    assert get_budget(study) is None and _count(sqlite_url, "grow") == (0, 10)
    prepare(spec(max_epochs_total=6), sqlite_url)
    assert _count(sqlite_url, "grow") == (0, 10) and "which is kept" in caplog.text
    prepare(spec(max_epochs_total=12), sqlite_url)
    assert _count(sqlite_url, "grow") == (0, 12)


def test_an_epoch_budget_added_later_counts_the_epochs_already_trained(sqlite_url: str) -> None:
    spec = StudySpec.model_validate(tiny_spec("later", budget={"n_trials": 2}))
    study = prepare(spec, sqlite_url).study
    fresh, resumed = (optuna.Trial(study, t._trial_id) for t in study.get_trials())
    for trial in (fresh, resumed):
        study._storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING)
        for step in (1, 2, 3):
            trial.report(0.1 * step, step)
    resumed.set_user_attr("resumed_from_epoch", 1)  # its epoch 1 was its predecessor's
    study.tell(fresh, 0.3)
    study.tell(resumed, 0.3)

    later = tiny_spec("later", budget={"n_trials": 2, "max_epochs_total": 20})
    prepare(StudySpec.model_validate(later), sqlite_url)
    assert _count(sqlite_url, "later") == (5, 20)


@pytest.mark.fast_paths
@pytest.mark.postgres
def test_the_epoch_budget_costs_one_statement_per_epoch_and_per_claim(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = f"{_module(tmp_path, monkeypatch, TRIAL_FORM)}:objective"  # 3 epochs a trial
    seen: dict[bool, list[str]] = {}
    for epochs in (False, True):
        name = f"t-{uuid.uuid4().hex[:12]}"
        budget = {"n_trials": 3, **({"max_epochs_total": 1000} if epochs else {})}
        spec = StudySpec.model_validate(_objective_spec(name, ref, budget))
        prepare(spec, postgres_url)
        with sql_statements() as seen[epochs]:
            assert _work(spec, postgres_url, tmp_path)[0] == 0
        assert len(_trials(postgres_url, name)) == 3

    # With the budget: each of the 9 epochs adds one UPDATE ... RETURNING, and each of the 4
    # claims (3 trials, then none left) one SELECT; the worker's read at start is in both.
    assert len(seen[True]) - len(seen[False]) == 9 + 4
    assert sum(s.startswith("UPDATE study_system_attributes") for s in seen[True]) == 9
    # Without it: the one read at the worker's start finds no budget, and nothing more.
    assert sum("FROM study_system_attributes WHERE study_id" in s for s in seen[False]) == 1
    assert not [s for s in seen[False] if s.startswith("UPDATE study_system_attributes")]


@pytest.mark.postgres
def test_two_workers_on_postgres_overshoot_the_budget_by_at_most_one_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str, write_spec: Any
) -> None:
    name, budget = f"t-{uuid.uuid4().hex[:12]}", 10
    ref = f"{_module(tmp_path, monkeypatch, PARAMS_FORM)}:objective"  # 4 epochs a trial
    spec = str(write_spec(_objective_spec(name, ref, {"max_epochs_total": budget})))
    monkeypatch.chdir(tmp_path)  # worker logs
    args = ["run", spec, "--storage", postgres_url, "--workers", "2", "--device", "cpu"]

    run = runner.invoke(app, args)  # in-process; the two workers are processes of their own

    assert run.exit_code == 0, run.output
    assert "budget 10 epochs (no trial limit)" in run.output
    assert run.output.count("epoch budget spent: ") == 1, run.output  # once, not per worker
    trials = _trials(postgres_url, name)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    used = system_attrs(optuna.load_study(study_name=name, storage=postgres_url))[ATTR_EPOCHS]
    # Every reported epoch counted once. The worker whose epoch reached the budget trains no
    # further; the other finishes at most the epoch it was in: 2 workers, at most 1 over.
    assert used == sum(len(t.intermediate_values) for t in trials)
    assert budget <= used <= budget + 1
    assert f"epochs trained: {used}/{budget} (epoch budget spent)" in run.output
    stopped = [t for t in trials if _stopped_by_budget(t)]
    assert stopped and all(t.state == TrialState.PRUNED for t in stopped)
    assert all(len(t.intermediate_values) == 4 for t in trials if t.state == TrialState.COMPLETE)

    status = runner.invoke(app, ["status", spec, "--storage", postgres_url])
    assert status.exit_code == 0, status.output
    assert f"{used}/{budget} epochs trained" in status.output
    assert re.search(r"^\d+ budget slots finished$", status.output, re.MULTILINE)  # no limit

    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "its epoch budget is spent" in again.output, again.output
    assert len(_trials(postgres_url, name)) == len(trials)  # no trial added, none claimed


def test_the_live_header_shows_epochs_of_the_budget_and_no_trial_limit() -> None:
    spec = StudySpec.model_validate(tiny_spec("header", budget={"max_epochs_total": 40}))
    plans = [WorkerPlan(0, "cpu", None, 1)]
    progress = LiveProgress(Console(file=io.StringIO(), force_terminal=True, width=160))
    progress.started(spec, "sqlite:///x.db", plans, budget=None, max_epochs=40)
    progress.snapshot(Snapshot({"WAITING": 8}, epochs=EpochCount(10, 40)))
    progress.snapshot(Snapshot({"COMPLETE": 3, "WAITING": 8}, epochs=EpochCount(22, 40)))
    shown = Console(file=io.StringIO(), width=160, record=True)
    shown.print(progress.render())
    progress.close()

    text = shown.export_text()
    assert "header 3 finished  epochs 22/40" in text  # no "/budget" without a trial limit
    assert re.search(r"eta \d+s", text)  # from the epochs' rate: 12 trained, 18 to go


def test_validate_takes_an_epoch_budget_instead_of_a_trial_budget(write_spec: Any) -> None:
    epochs_only = write_spec(tiny_spec("v", budget={"max_epochs_total": 300}))
    ok = runner.invoke(app, ["validate", str(epochs_only)])
    assert ok.exit_code == 0 and ", 300 epochs, " in ok.output, ok.output

    both = write_spec(tiny_spec("v", budget={"n_trials": 20, "max_epochs_total": 300}), "b.yaml")
    assert "20 trials or 300 epochs" in runner.invoke(app, ["validate", str(both)]).output

    neither = write_spec(tiny_spec("v", budget={"timeout": 60}), "n.yaml")
    missing = runner.invoke(app, ["validate", str(neither)])
    assert missing.exit_code == 2
    assert "budget.n_trials: required" in missing.output
    assert "unless budget.max_epochs_total" in missing.output

    zero = write_spec(tiny_spec("v", budget={"max_epochs_total": 0}), "z.yaml")
    bad = runner.invoke(app, ["validate", str(zero)])
    assert bad.exit_code == 2 and "budget.max_epochs_total" in bad.output
