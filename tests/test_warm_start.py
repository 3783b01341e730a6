"""Warm start: an earlier study's fitting trials become history once, when the study is created,
outside the budget and the best; its best configurations run first; every refusal writes nothing.
Real SQLite (and PostgreSQL) storages, custom objectives in-process: no training."""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing as mp
import shutil
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from typer.testing import CliRunner

import hpo
from hpo.cli import app
from hpo.errors import SpecError
from hpo.insight import best_params_yaml, write_trials
from hpo.spec import StudySpec, load_spec, spec_from_dict
from hpo.study import (
    budget_used,
    get_budget,
    is_warm,
    open_storage,
    own_best,
    prepare,
    snapshot,
)
from hpo.study.search.ranking import pareto_front, ranked
from hpo.study.search.warm import ATTR_CONFIG, fit
from hpo.view import StudyView
from hpo.worker import WorkerContext, run_worker

runner = CliRunner()

OBJECTIVE = """
def objective(params, report):
    report(params["x"], 1)
    return params["x"]
"""

SPACE = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "n": {"type": "int", "low": 2, "high": 8, "step": 2},
    "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
    "momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"opt": "sgd"}},
}

#: The earlier study: (params, value). Values far above what the new objective returns (x <= 1),
#: so a history trial would always be Optuna's best.
EARLIER: list[tuple[dict[str, Any], float]] = [
    ({"x": 0.2, "n": 4, "opt": "adam", "extra": 7}, 10.0),  # fits, `extra` dropped
    ({"x": 0.9, "n": 8, "opt": "sgd", "momentum": 0.9}, 14.0),  # fits: the best
    ({"x": 0.5, "n": 2, "opt": "adam", "momentum": 0.7}, 12.0),  # fits, inactive momentum dropped
    ({"x": 0.4, "n": 6, "opt": "sgd"}, 13.0),  # momentum missing: skipped
    ({"x": 1.5, "n": 4, "opt": "adam"}, 20.0),  # x outside [0, 1]: skipped
    ({"x": 0.3, "n": 3, "opt": "adam"}, 19.0),  # n off the step: skipped
    ({"x": 0.6, "n": 4, "opt": "rmsprop"}, 18.0),  # not a choice: skipped
    ({"x": 0.7, "n": 6, "opt": "adam"}, 11.0),  # fits
]
FITTING = 4  # trials 0, 1, 2, 7
BEST_FIRST = [  # by value: trials 1, 2, 7
    {"x": 0.9, "n": 8, "opt": "sgd", "momentum": 0.9},
    {"x": 0.5, "n": 2, "opt": "adam"},
    {"x": 0.7, "n": 6, "opt": "adam"},
]


@pytest.fixture
def objective(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable ``module:function`` (in tmp_path, beside the spec files)."""
    name = f"warm_obj_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(OBJECTIVE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:objective"


def _spec_dict(name: str, ref: str, warm: dict[str, Any] | None, **over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "objective": ref,
        "metric": {"name": "score", "direction": "maximize"},
        "sampler": {"type": "tpe", "seed": 0, "n_startup_trials": 2},
        "pruner": {"type": "none"},
        "budget": {"n_trials": 5},
        "space": SPACE,
    }
    if warm is not None:
        spec["warm_start"] = warm
    spec.update(over)
    return spec


def _spec(name: str, ref: str, warm: dict[str, Any] | None = None, **over: Any) -> StudySpec:
    return spec_from_dict(_spec_dict(name, ref, warm, **over))


def _earlier(
    url: str,
    name: str = "earlier",
    direction: str = "maximize",
    metric: str = "score",
    trials: list[tuple[dict[str, Any], float]] = EARLIER,
) -> optuna.Study:
    """The earlier study as plain Optuna writes it, plus one failed trial (never used)."""
    # hpo's storage: SQLite in WAL mode, so the trials below are not one fsync each
    study = optuna.create_study(study_name=name, storage=open_storage(url), direction=direction)
    study.set_metric_names([metric])
    wide = {
        "x": FloatDistribution(0, 2),
        "n": IntDistribution(1, 10),
        "opt": CategoricalDistribution(["sgd", "adam", "rmsprop"]),
        "momentum": FloatDistribution(0, 1),
        "extra": IntDistribution(0, 10),
    }
    done = [
        optuna.trial.create_trial(
            params=params,
            distributions={k: wide[k] for k in params},
            value=value,
            intermediate_values={1: value / 2, 2: value},
        )
        for params, value in trials
    ]
    failed = optuna.trial.create_trial(state=TrialState.FAIL, params={}, distributions={})
    study.add_trials([*done, failed])
    return study


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file holding the earlier study, built once (creating the tables is slow)."""
    path = tmp_path_factory.mktemp("template") / "studies.db"
    _earlier(f"sqlite:///{path}")
    with contextlib.closing(sqlite3.connect(path)) as conn:  # everything into the file: WAL
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def earlier_url(template: Path, tmp_path: Path) -> str:
    """A storage holding the default earlier study, as ``_earlier(url)`` leaves it."""
    path = tmp_path / "studies.db"
    shutil.copy(template, path)
    return f"sqlite:///{path}"


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


# -- created once, under the creating lock ---------------------------------------------------


def test_history_added_once_and_best_configurations_enqueued_first(
    earlier_url: str, objective: str
) -> None:
    spec = _spec("new", objective, {"study": "earlier", "top_k": 3})

    handle = prepare(spec, earlier_url)
    again = prepare(spec, earlier_url)  # a second node (or a re-run) joins: nothing added

    assert handle.created and handle.warm_start is not None
    assert "4 trials as history, 4 skipped (1 missing a parameter, 3 outside the space)" in (
        handle.warm_start
    )
    assert again.warm_start is None
    trials = _trials(earlier_url, "new")
    history = [t for t in trials if is_warm(t)]
    assert [t.number for t in history] == [0, 1, 2, 3]
    assert [t.system_attrs["hpo:warm_start"] for t in history] == [
        f"study 'earlier' trial {n}" for n in (0, 1, 2, 7)
    ]
    by_value = {t.value: t for t in history}
    assert by_value[10.0].params == {"x": 0.2, "n": 4, "opt": "adam"}  # extra dropped
    assert by_value[12.0].params == {"x": 0.5, "n": 2, "opt": "adam"}  # inactive dropped
    assert by_value[14.0].intermediate_values == {1: 7.0, 2: 14.0}
    # The new space's distributions, exactly as the workers suggest them: TPE models them.
    assert by_value[14.0].distributions == {
        "x": FloatDistribution(0.0, 1.0),
        "n": IntDistribution(2, 8, step=2),
        "opt": CategoricalDistribution(["sgd", "adam"]),
        "momentum": FloatDistribution(0.5, 0.99),
    }
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert [t.number for t in waiting] == [4, 5, 6, 7, 8]  # the budget: 3 warm + 2 more
    assert [t.system_attrs["fixed_params"] for t in waiting[:3]] == BEST_FIRST
    assert waiting[0].user_attrs[ATTR_CONFIG] == "study 'earlier' trial 1"
    assert waiting[3].system_attrs["fixed_params"] == {}
    assert budget_used(trials) == 5 == get_budget(handle.study)


def _prepare_when_released(url: str, spec_json: str, path: str, go: Any, out: Any) -> None:
    import sys

    sys.path.insert(0, path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = StudySpec.model_validate_json(spec_json)
    go.wait(60)
    out.put(prepare(spec, url).warm_start)


@pytest.mark.slow
def test_two_processes_starting_at_once_add_the_history_once(
    earlier_url: str, objective: str, tmp_path: Path
) -> None:
    spec = _spec("new", objective, {"study": "earlier", "top_k": 3})
    ctx = mp.get_context("fork")  # spawn re-imports everything: seconds per process
    go, out = ctx.Event(), ctx.Queue()
    args = (earlier_url, spec.model_dump_json(exclude_unset=True), str(tmp_path), go, out)
    procs = [ctx.Process(target=_prepare_when_released, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    go.set()
    lines = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)

    assert sum(line is not None for line in lines) == 1  # exactly one created the study
    trials = _trials(earlier_url, "new")
    assert sum(is_warm(t) for t in trials) == FITTING
    assert sum(ATTR_CONFIG in t.user_attrs for t in trials) == 3
    assert budget_used(trials) == 5


# -- the budget, the counts and the best leave history out -----------------------------------


def test_budget_counts_and_best_leave_the_history_out(
    earlier_url: str, objective: str, tmp_path: Path
) -> None:
    spec = _spec("new", objective, {"study": "earlier", "top_k": 3})
    prepare(spec, earlier_url)
    ctx = WorkerContext(spec=spec, storage_url=earlier_url, artifacts=str(tmp_path / "art"))

    assert run_worker(ctx, threading.Event(), lambda _event: None) == 0

    study = optuna.load_study(study_name="new", storage=earlier_url)
    trials = study.get_trials()
    own = [t for t in trials if not is_warm(t)]
    assert len(own) == 5 and all(t.state == TrialState.COMPLETE for t in own)
    assert [t.params for t in own[:3]] == BEST_FIRST  # the warm configurations ran first
    assert len(trials) == 5 + FITTING
    assert is_warm(study.best_trial)  # Optuna sees the history (value 14)...
    best = own_best(study)  # ...hpo reports the study's own
    assert best is not None and not is_warm(best)
    assert best.value == max(t.value for t in own)

    snap = snapshot(study)
    assert snap.counts["COMPLETE"] == 5 and snap.finished_slots == 5 and snap.warm == FITTING
    assert snap.best_number == best.number and snap.best_value == best.value
    status = StudyView(study, spec, earlier_url).status(last=20)
    assert status.slots == {"COMPLETE": 5} and status.counts == {"COMPLETE": 5}
    assert status.warm == FITTING and status.retries == 0 and status.finished == 5
    assert status.best is not None and status.best.number == best.number
    assert all(not is_warm(t) for t in status.latest)


@pytest.mark.slow
def test_hpo_run_says_what_it_added_and_runs_exactly_the_budget(
    write_spec: Any,
    earlier_url: str,
    objective: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_spec(_spec_dict("new", objective, {"study": "earlier", "top_k": 2}))

    result = hpo.run(
        path, storage=earlier_url, workers=2, logs_dir=tmp_path / "logs", progress=True
    )

    assert result.exit_code == 0
    assert "warm start from study 'earlier'" in capsys.readouterr().out
    assert result.summary.counts["COMPLETE"] == 5 and result.summary.warm == FITTING
    own = [t for t in result.study.get_trials() if not is_warm(t)]
    assert len(own) == 5 and [t.params for t in own[:2]] == BEST_FIRST[:2]
    assert hpo.run(path, storage=earlier_url, workers=1).exit_code == 0  # complete: no more
    assert len(result.study.get_trials()) == 5 + FITTING


def test_top_k_beyond_the_budget_enqueues_the_budget(earlier_url: str, objective: str) -> None:
    spec = _spec("new", objective, {"study": "earlier", "top_k": 10}, budget={"n_trials": 2})
    handle = prepare(spec, earlier_url)
    waiting = [t for t in handle.study.get_trials() if t.state == TrialState.WAITING]
    assert [t.system_attrs["fixed_params"] for t in waiting] == BEST_FIRST[:2]
    assert "its best 2 configurations run first" in (handle.warm_start or "")


def test_status_leaves_the_history_out(write_spec: Any, earlier_url: str, objective: str) -> None:
    path = write_spec(_spec_dict("new", objective, {"study": "earlier", "top_k": 1}))
    warmed = prepare(load_spec(path), earlier_url)  # as `hpo run` would, minus the workers
    assert warmed.warm_start is not None

    result = runner.invoke(app, ["status", str(path), "--storage", earlier_url])

    assert result.exit_code == 0, result.output
    assert "0/5 budget slots finished" in result.output
    assert f"warm start: {FITTING} earlier trials as history" in result.output
    assert "no completed trial yet" in result.output  # the history is never the best


# -- fitting a trial to the new space --------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "text", "fitted", "why"),
    [
        (
            {"x": 1, "n": 8, "opt": "adam", "z": "dropped"},
            False,
            {"x": 1.0, "n": 8, "opt": "adam"},
            None,
        ),
        (
            {"x": 0.0, "n": 2.0, "opt": "sgd", "momentum": 0.99},
            False,
            {"x": 0.0, "n": 2, "opt": "sgd", "momentum": 0.99},
            None,
        ),
        ({"x": 0.5, "n": 4}, False, None, "missing"),
        ({"x": 0.5, "n": 4, "opt": "sgd"}, False, None, "missing"),  # momentum active, absent
        ({"x": -0.1, "n": 4, "opt": "adam"}, False, None, "outside"),
        ({"x": 0.5, "n": 10, "opt": "adam"}, False, None, "outside"),
        ({"x": 0.5, "n": 4.5, "opt": "adam"}, False, None, "outside"),
        ({"x": True, "n": 4, "opt": "adam"}, False, None, "outside"),
        ({"x": float("nan"), "n": 4, "opt": "adam"}, False, None, "outside"),
        (
            {"x": "0.25", "n": "6", "opt": "sgd", "momentum": "0.5"},
            True,
            {"x": 0.25, "n": 6, "opt": "sgd", "momentum": 0.5},
            None,
        ),
        ({"x": "0.25", "n": "6.0", "opt": "adam"}, True, {"x": 0.25, "n": 6, "opt": "adam"}, None),
        ({"x": "abc", "n": "6", "opt": "adam"}, True, None, "outside"),
    ],
)
def test_fit_keeps_active_params_inside_the_space_and_drops_the_rest(
    objective: str, params: dict[str, Any], text: bool, fitted: Any, why: Any
) -> None:
    assert fit(_spec("fit", objective), params, text) == (fitted, why)


def test_fit_respects_float_steps_and_categorical_types(objective: str) -> None:
    space = {
        "lr": {"type": "float", "low": 0.1, "high": 0.5, "step": 0.1},
        "flag": {"type": "categorical", "choices": [True, 1, "1"]},
    }
    spec = _spec("fit", objective, space=space)
    assert fit(spec, {"lr": 0.3, "flag": 1}) == ({"lr": 0.3, "flag": 1}, None)
    assert fit(spec, {"lr": 0.25, "flag": 1}) == (None, "outside")
    got, _ = fit(spec, {"lr": 0.3, "flag": True})
    assert got is not None and got["flag"] is True
    assert fit(spec, {"lr": 0.3, "flag": 2}) == (None, "outside")


def test_ranking_one_metric_and_pareto_fronts() -> None:
    assert list(ranked([(3.0,), (5.0,), (1.0,), (5.0,)], [True])) == [1, 3, 0, 2]
    assert list(ranked([(3.0,), (5.0,), (1.0,)], [False])) == [2, 0, 1]
    points = [(1.0, 5.0), (2.0, 2.0), (5.0, 1.0), (3.0, 3.0), (4.0, 4.0)]  # both minimised
    assert pareto_front(points, [False, False]) == [0, 1, 2]
    assert list(ranked(points, [False, False])) == [0, 1, 2, 3, 4]
    assert list(ranked([(1.0, 2.0), (2.0, 1.0), (0.5, 3.0)], [True, False])) == [1, 0, 2]


# -- refused, with nothing written -----------------------------------------------------------


def _refused(write_spec: Any, url: str, spec: dict[str, Any], field: str) -> str:
    before = set(optuna.get_all_study_names(url))
    path = write_spec(spec)
    result = runner.invoke(app, ["run", str(path), "--storage", url, "--workers", "1"])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"error: {path}: {field}: "), result.output
    assert set(optuna.get_all_study_names(url)) == before  # no new study
    return result.output


@pytest.mark.parametrize(
    ("earlier", "warm", "field", "words"),
    [
        ({}, {"study": "nosuch"}, "warm_start.study", "no study 'nosuch'"),
        ({"direction": "minimize"}, {"study": "earlier"}, "warm_start.study", "is minimize"),
        ({"metric": "loss"}, {"study": "earlier"}, "warm_start.study", "optimises loss"),
        (
            {"trials": [({"x": 1.5, "n": 4, "opt": "adam"}, 1.0)]},
            {"study": "earlier"},
            "warm_start.study",
            "none of the 1 complete trials",
        ),
        ({}, {"from": "nosuch.csv"}, "warm_start.from", "no such file"),
    ],
)
def test_refused_with_one_line_exit_2_and_nothing_written(
    write_spec: Any,
    sqlite_url: str,
    objective: str,
    earlier: dict[str, Any],
    warm: dict[str, Any],
    field: str,
    words: str,
    request: pytest.FixtureRequest,
) -> None:
    if earlier:
        url = sqlite_url
        _earlier(url, **earlier)
    else:
        url = request.getfixturevalue("earlier_url")
    output = _refused(write_spec, url, _spec_dict("new", objective, warm), field)
    assert words in output


def test_source_storage_that_does_not_exist_is_refused_and_not_created(
    write_spec: Any, earlier_url: str, objective: str, tmp_path: Path
) -> None:
    missing = tmp_path / "elsewhere.db"
    warm = {"study": "earlier", "storage": f"sqlite:///{missing}"}
    output = _refused(
        write_spec, earlier_url, _spec_dict("new", objective, warm), "warm_start.study"
    )
    assert "does not exist" in output and not missing.exists()


def test_source_in_another_storage(earlier_url: str, objective: str, tmp_path: Path) -> None:
    here = f"sqlite:///{tmp_path / 'here.db'}"
    handle = prepare(_spec("new", objective, {"study": "earlier", "storage": earlier_url}), here)
    assert sum(is_warm(t) for t in handle.study.get_trials()) == FITTING


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"warm_start": {"study": "a", "from": "b.csv"}}, "warm_start: give one of"),
        ({"warm_start": {"top_k": 2}}, "warm_start: give one of"),
        ({"warm_start": {"from": "b.csv", "storage": "sqlite:///x.db"}}, "warm_start.storage"),
        ({"warm_start": {"from": "b.txt"}}, "warm_start.from: 'b.txt'"),
        ({"warm_start": {"study": "a", "top_k": -1}}, "warm_start.top_k"),
        ({"warm_start": {"study": "new"}}, "warm_start.study: 'new' is this study itself"),
        (
            {
                "warm_start": {"study": "a"},
                "sampler": {"type": "grid"},
                "space": {"x": {"type": "float", "values": [0.1]}},
            },
            "warm_start: a grid runs every point once",
        ),
    ],
)
def test_spec_shape_refused_by_validate(
    write_spec: Any, objective: str, spec: dict[str, Any], words: str
) -> None:
    warm = spec.pop("warm_start")
    path = write_spec(_spec_dict("new", objective, warm, **spec))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert words in result.output and str(path) in result.output


# -- from: files hpo writes ------------------------------------------------------------------


def _export(study: optuna.Study, path: Path, fmt: str) -> Path:
    stream = io.StringIO()
    write_trials(study, stream, "json" if fmt == "json" else "csv")
    path.write_text(stream.getvalue())
    return path


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_from_an_export_file(
    write_spec: Any, sqlite_url: str, objective: str, tmp_path: Path, template: Path, fmt: str
) -> None:
    source = optuna.load_study(study_name="earlier", storage=f"sqlite:///{template}")
    _export(source, tmp_path / f"trials.{fmt}", fmt)
    path = write_spec(_spec_dict("new", objective, {"from": f"trials.{fmt}", "top_k": 2}))

    checked = runner.invoke(app, ["validate", str(path)])  # reads and fits it, no storage
    assert checked.exit_code == 0, checked.output
    assert f"{FITTING} trials as history" in checked.output

    handle = prepare(load_spec(path), sqlite_url, source=str(path))
    trials = handle.study.get_trials()
    history = [t for t in trials if is_warm(t)]
    assert sorted(t.value for t in history) == [10.0, 11.0, 12.0, 14.0]
    assert history[0].system_attrs["hpo:warm_start"] == f"trials.{fmt} trial 0"
    if fmt == "json":  # the JSON export carries the learning curves
        assert {t.value: t.intermediate_values for t in history}[14.0] == {1: 7.0, 2: 14.0}
    waiting = [t.system_attrs["fixed_params"] for t in trials if t.state == TrialState.WAITING]
    assert waiting[:2] == BEST_FIRST[:2]


def test_from_a_json_export_of_another_direction_is_refused(
    write_spec: Any, sqlite_url: str, objective: str, tmp_path: Path
) -> None:
    source = _earlier(f"sqlite:///{tmp_path / 'old.db'}", direction="minimize")
    _export(source, tmp_path / "trials.json", "json")
    spec = _spec_dict("new", objective, {"from": "trials.json"})
    assert "is minimize" in _refused(write_spec, sqlite_url, spec, "warm_start.from")


def test_from_best_params_yaml_enqueues_the_configuration_only(
    write_spec: Any, sqlite_url: str, objective: str, tmp_path: Path
) -> None:
    source = _earlier(f"sqlite:///{tmp_path / 'old.db'}", trials=EARLIER[1:2])
    (tmp_path / "best_params.yaml").write_text(best_params_yaml(source, source.best_trial, "score"))
    path = write_spec(_spec_dict("new", objective, {"from": "best_params.yaml"}))

    handle = prepare(load_spec(path), sqlite_url, source=str(path))

    trials = handle.study.get_trials()
    assert not any(is_warm(t) for t in trials)  # no value: nothing for the sampler
    assert trials[0].system_attrs["fixed_params"] == BEST_FIRST[0]
    assert trials[0].user_attrs[ATTR_CONFIG] == "best_params.yaml entry 1"


def test_from_params_yaml_that_does_not_fit_or_parse_is_refused(
    write_spec: Any, sqlite_url: str, objective: str, tmp_path: Path
) -> None:
    (tmp_path / "best.yaml").write_text(yaml.safe_dump({"x": 0.5}))
    spec = _spec_dict("new", objective, {"from": "best.yaml"})
    assert "none of the 1 entries" in _refused(write_spec, sqlite_url, spec, "warm_start.from")
    (tmp_path / "best.yaml").write_text("x: [unclosed")
    assert "not valid YAML" in _refused(write_spec, sqlite_url, spec, "warm_start.from")
    (tmp_path / "best.yaml").write_text(yaml.safe_dump(BEST_FIRST[0]))
    spec = _spec_dict("new", objective, {"from": "best.yaml", "top_k": 0})
    assert "set top_k" in _refused(write_spec, sqlite_url, spec, "warm_start.from")


# -- several metrics -------------------------------------------------------------------------


def test_multi_objective_history_and_pareto_first(sqlite_url: str, objective: str) -> None:
    source = optuna.create_study(
        study_name="earlier", storage=sqlite_url, directions=["maximize", "minimize"]
    )
    source.set_metric_names(["score", "cost"])
    dist = {"x": FloatDistribution(0, 1), "n": IntDistribution(2, 8, step=2)}
    dist["opt"] = CategoricalDistribution(["sgd", "adam"])
    for x, values in [(0.1, [0.5, 1.0]), (0.2, [0.9, 3.0]), (0.3, [0.4, 2.0]), (0.4, [0.8, 0.5])]:
        source.add_trial(
            optuna.trial.create_trial(
                params={"x": x, "n": 2, "opt": "adam"}, distributions=dist, values=values
            )
        )
    metrics = [
        {"name": "score", "direction": "maximize"},
        {"name": "cost", "direction": "minimize"},
    ]
    spec = _spec("new", objective, {"study": "earlier", "top_k": 3}, metric=metrics)

    handle = prepare(spec, sqlite_url)

    trials = handle.study.get_trials()
    assert sum(is_warm(t) for t in trials) == 4
    first = [t.system_attrs["fixed_params"]["x"] for t in trials if ATTR_CONFIG in t.user_attrs]
    # front {0.2 (0.9, 3), 0.4 (0.8, 0.5)} by score, then the next front {0.1}
    assert first == [0.2, 0.4, 0.1]
    assert snapshot(handle.study).front == ()  # the history is no Pareto front of its own


def test_multi_objective_refuses_a_single_objective_source(
    write_spec: Any, earlier_url: str, objective: str
) -> None:
    metrics = [
        {"name": "score", "direction": "maximize"},
        {"name": "cost", "direction": "minimize"},
    ]
    spec = _spec_dict("new", objective, {"study": "earlier"}, metric=metrics)
    _refused(write_spec, earlier_url, spec, "warm_start.study")


# -- PostgreSQL --------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_history_once_and_refusal_writes_nothing(
    postgres_url: str, unique_name: str, objective: str, write_spec: Any
) -> None:
    source = f"{unique_name}-old"
    _earlier(postgres_url, name=source)
    spec = _spec(unique_name, objective, {"study": source, "top_k": 3})

    assert prepare(spec, postgres_url).warm_start is not None
    assert prepare(spec, postgres_url).warm_start is None

    trials = _trials(postgres_url, unique_name)
    assert sum(is_warm(t) for t in trials) == FITTING
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert [t.system_attrs["fixed_params"] for t in waiting[:3]] == BEST_FIRST
    assert budget_used(trials) == 5

    refused = f"{unique_name}-refused"
    bad = _spec_dict(
        refused, objective, {"study": source}, metric={"name": "score", "direction": "minimize"}
    )
    _refused(write_spec, postgres_url, bad, "warm_start.study")
    assert refused not in optuna.get_all_study_names(postgres_url)


def test_spec_error_names_the_source_without_a_file(sqlite_url: str, objective: str) -> None:
    with pytest.raises(SpecError, match=r"^spec: warm_start.study: no study 'gone'"):
        prepare(_spec("new", objective, {"study": "gone"}), sqlite_url)
    assert optuna.get_all_study_names(sqlite_url) == []


def test_export_marks_history_trials(earlier_url: str, objective: str) -> None:
    study = prepare(_spec("new", objective, {"study": "earlier"}), earlier_url).study
    stream = io.StringIO()
    write_trials(study, stream, "json")
    records = json.loads(stream.getvalue())["trials"]
    assert [r["warm_start"] is not None for r in records[:5]] == [True] * FITTING + [False]


@pytest.mark.fast_paths
def test_bulk_history_writes_what_optuna_add_trials_writes(db_url: str, unique_name: str) -> None:
    """The one-transaction insert (``UpsertWrites.add_finished_trials``) against Optuna's own
    ``add_trials``: the same trials read back, field by field."""
    storage = open_storage(db_url)
    dists = {
        "lr": FloatDistribution(1e-4, 1.0, log=True),
        "n": IntDistribution(2, 8, step=2),
        "opt": CategoricalDistribution(["sgd", None, True, 3]),
    }
    made = [
        optuna.trial.create_trial(
            params={
                "lr": 0.01 * (i + 1),
                "n": 2 + 2 * (i % 4),
                "opt": [None, True, 3, "sgd"][i % 4],
            },
            distributions=dists,
            values=[float(i), float("inf") if i == 2 else -float(i)],
            intermediate_values={1: 0.5 * i, 2: float("-inf") if i == 1 else float(i)},
            system_attrs={"hpo:warm_start": f"trial {i}", "nested": {"a": [1, 2]}},
            user_attrs={"note": "é", "k": i},
        )
        for i in range(5)
    ]
    read = []
    for suffix, bulk in (("optuna", False), ("bulk", True)):
        study = optuna.create_study(
            study_name=f"{unique_name}-{suffix}", storage=storage, directions=["maximize"] * 2
        )
        if bulk:
            storage.add_finished_trials(study._study_id, made)
        else:
            study.add_trials(made)
        read.append(optuna.load_study(study_name=study.study_name, storage=db_url).trials)
    for ours, theirs in zip(read[1], read[0], strict=True):
        for name in ("number", "state", "values", "params", "distributions", "user_attrs"):
            assert getattr(ours, name) == getattr(theirs, name), name
        assert ours.system_attrs == theirs.system_attrs
        assert ours.intermediate_values == theirs.intermediate_values
        assert ours.datetime_start == theirs.datetime_start
        assert ours.datetime_complete == theirs.datetime_complete
