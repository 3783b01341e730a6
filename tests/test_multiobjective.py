"""Metric names on the study, and multi-objective studies: spec, storage, values, output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest
from conftest import TINY_TRAIN, tiny_spec
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo.cli import app
from hpo.errors import SpecError, StudyConflictError
from hpo.spec import StudySpec, load_spec
from hpo.study import prepare
from hpo.worker.trial import run_trial

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
TWO = [
    {"name": "val_accuracy", "direction": "maximize"},
    {"name": "params_m", "direction": "minimize"},
]


def _spec(**overrides: object) -> StudySpec:
    return StudySpec.model_validate(tiny_spec(**overrides))


def _spec_error(write_spec, spec: dict) -> str:  # noqa: ANN001 - the conftest fixture
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(spec))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_prepared_study_names_its_metric_for_the_dashboard(sqlite_url: str) -> None:
    prepare(_spec(metric={"name": "val_loss", "direction": "minimize"}), sqlite_url)

    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    assert study.metric_names == ["val_loss"]


def test_a_list_of_metrics_makes_a_multi_objective_study(sqlite_url: str) -> None:
    spec = _spec(metric=TWO)
    assert spec.multi_objective and [m.name for m in spec.metrics] == ["val_accuracy", "params_m"]
    assert spec.pruner.type == "none"  # Optuna cannot prune it: unpruned by default

    prepare(spec, sqlite_url)

    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    assert study.directions == [
        optuna.study.StudyDirection.MAXIMIZE,
        optuna.study.StudyDirection.MINIMIZE,
    ]
    assert study.metric_names == ["val_accuracy", "params_m"]


def test_joining_with_another_number_of_metrics_is_refused(sqlite_url: str) -> None:
    prepare(_spec(), sqlite_url)
    with pytest.raises(StudyConflictError, match="metric: .* 1 metric"):
        prepare(_spec(metric=TWO), sqlite_url)
    prepare(_spec(metric=TWO), f"{sqlite_url}.2")
    with pytest.raises(StudyConflictError, match="minimize, maximize"):
        flipped = [{**TWO[0], "direction": "minimize"}, {**TWO[1], "direction": "maximize"}]
        prepare(_spec(metric=flipped), f"{sqlite_url}.2")


@pytest.mark.parametrize("pruner", ["hyperband", "median"])
def test_pruning_a_multi_objective_study_is_refused_naming_the_field(
    write_spec, pruner: str
) -> None:
    message = _spec_error(write_spec, tiny_spec(metric=TWO, pruner={"type": pruner}))
    assert "pruner.type" in message and "cannot prune" in message and "none" in message


@pytest.mark.parametrize(
    ("metric", "sampler", "where", "words"),
    [
        ([TWO[0], TWO[0]], None, "metric.1.name", "listed twice"),
        ([TWO[0], {"name": "val_f1"}], None, "metric.1.name", "unknown metric 'val_f1'"),
        (TWO, {"type": "cmaes"}, "sampler.type", "cmaes optimises one metric"),
        ({"name": "val_loss", "direction": "down"}, None, "metric.direction", "maximize"),
    ],
)
def test_bad_metric_lists_are_one_line_naming_the_field(
    write_spec, metric: object, sampler: dict | None, where: str, words: str
) -> None:
    spec = tiny_spec(metric=metric, **({"sampler": sampler} if sampler else {}))
    message = _spec_error(write_spec, spec)
    assert f": {where}: " in message and words in message


def test_the_trainer_gives_a_multi_objective_trial_its_metrics_without_reporting() -> None:
    spec = _spec(metric=TWO, train={**TINY_TRAIN, "epochs": 2})
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    events: list[dict] = []

    outcome = run_trial(trial, spec, "cpu", threading.Event(), events.append)

    assert outcome.state == TrialState.COMPLETE, outcome.reason
    assert isinstance(outcome.value, list) and len(outcome.value) == 2
    assert 0 < outcome.value[1] < 1  # the small CNN's parameters, in millions
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]  # progress still shown
    study.tell(trial, outcome.value)
    assert study.trials[0].intermediate_values == {}  # trial.report is refused by Optuna here


OBJECTIVE = """
def objective(params, report):
    x = params["x"]
    report({"loss": x * x, "cost": (x - 2) ** 2}, 1)
    return (x * x, (x - 2) ** 2)
"""


@pytest.mark.slow
def test_a_custom_multi_objective_study_runs_and_shows_its_pareto_front(
    write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "twoobj.py").write_text(OBJECTIVE)
    spec = write_spec(
        {
            "name": "twoobj",
            "objective": "twoobj:objective",
            "metric": [
                {"name": "loss", "direction": "minimize"},
                {"name": "cost", "direction": "minimize"},
            ],
            "sampler": {"type": "nsgaii", "seed": 1, "population_size": 4},
            "budget": {"n_trials": 8},
            "space": {"x": {"type": "float", "low": -1, "high": 3}},
        }
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    env.pop("HPO_STORAGE", None)
    run = subprocess.run(
        [sys.executable, "-m", "hpo", "run", str(spec), "--workers", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Pareto front (loss, cost)" in run.stdout

    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    study = optuna.load_study(study_name="twoobj", storage=url)
    assert study.metric_names == ["loss", "cost"]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 8
    assert all(t.values == pytest.approx([t.params["x"] ** 2, (t.params["x"] - 2) ** 2])
               for t in complete)  # fmt: skip
    front = sorted(t.number for t in study.best_trials)

    monkeypatch.syspath_prepend(str(tmp_path))  # the spec names the objective's module
    best = runner.invoke(app, ["best", str(spec), "--storage", url, "--json"])
    assert best.exit_code == 0, best.output
    record = json.loads(best.output)
    assert record["metrics"] == ["loss", "cost"]
    assert [e["trial"] for e in record["pareto_front"]] == front

    out = tmp_path / "report"
    report = runner.invoke(app, ["report", str(spec), "--storage", url, "--output", str(out)])
    assert report.exit_code == 0, report.output
    assert (out / "pareto_front.png").exists() and not (out / "best_params.yaml").exists()
    assert "Pareto trial" in (out / "report.html").read_text()
    assert "# Pareto front of study twoobj" in (out / "pareto_front.yaml").read_text()
