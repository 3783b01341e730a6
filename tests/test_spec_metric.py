"""What a study optimises: an Optuna user's defaults (minimise ``value``), the ``direction:``
shorthand, and the metric and direction shown before anything runs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from conftest import importable_module, tiny_spec
from rich.console import Console
from typer.testing import CliRunner

import hpo
from hpo.cli import app
from hpo.dispatch import WorkerPlan
from hpo.progress import PlainProgress
from hpo.spec import MetricSpec, spec_from_dict

runner = CliRunner()

QUAD = "def objective(params, report):\n    return (params['x'] - 2) ** 2\n"


@pytest.fixture
def quad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``quadobj:objective``, ``(x - 2) ** 2``, importable here and in workers."""
    return importable_module(tmp_path, monkeypatch, "quadobj", QUAD)


def _quad(**extra: Any) -> dict[str, Any]:
    return {
        "name": "quad",
        "objective": "quadobj:objective",
        "sampler": {"type": "random", "seed": 0},
        "pruner": {"type": "none"},
        "budget": {"n_trials": 6},
        "space": {"x": {"type": "float", "low": -10, "high": 10}},
        **extra,
    }


def test_an_objective_without_a_metric_minimises_value(quad: Path) -> None:
    spec = spec_from_dict(_quad())
    assert spec.metrics == (MetricSpec(name="value", direction="minimize"),)


@pytest.mark.parametrize(
    ("metric", "direction"),
    [("val_accuracy", "maximize"), ("train_accuracy", "maximize"), ("val_loss", "minimize")],
)
def test_a_trainer_metric_without_a_direction_takes_its_own(metric: str, direction: str) -> None:
    spec = spec_from_dict(tiny_spec(metric={"name": metric}))
    assert spec.metrics[0].direction == direction


def test_a_custom_metric_without_a_direction_is_minimised_as_in_optuna(quad: Path) -> None:
    assert spec_from_dict(_quad(metric={"name": "score"})).metrics[0].direction == "minimize"


def test_direction_and_directions_are_shorthand_for_metric(quad: Path) -> None:
    one = spec_from_dict(_quad(direction="maximize"))
    assert one.metrics == (MetricSpec(name="value", direction="maximize"),)
    named = spec_from_dict(_quad(direction="maximize", metric={"name": "score"}))
    assert named.metrics == (MetricSpec(name="score", direction="maximize"),)
    trainer = spec_from_dict({**tiny_spec(direction="minimize"), "metric": {"name": "val_loss"}})
    assert trainer.metrics == (MetricSpec(name="val_loss", direction="minimize"),)

    two = spec_from_dict(_quad(directions=["minimize", "maximize"]))
    assert [(m.name, m.direction) for m in two.metrics] == [
        ("value_0", "minimize"),
        ("value_1", "maximize"),
    ]
    assert two.multi_objective and two.pruner.type == "none"
    # What a worker receives (the spec as set) validates to the same spec.
    assert spec_from_dict(two.model_dump(exclude_unset=True)) == two


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"direction": "up"}, ":2: direction: 'up' is not maximize or minimize"),
        (
            {"direction": "maximize", "metric": {"name": "s", "direction": "minimize"}},
            ": direction: maximize here, but the metric says minimize: give it once",
        ),
        (
            {"direction": "maximize", "directions": ["minimize"]},
            ": directions: give `direction` (one metric) or `directions`, not both",
        ),
        ({"directions": ["minimize", "down"]}, ": directions.1: 'down' is not maximize or"),
        (
            {"directions": ["minimize"], "metric": [{"name": "a"}, {"name": "b"}]},
            ": directions: 1 directions for metric: give one per metric",
        ),
    ],
)
def test_a_bad_direction_is_one_line_naming_the_path(
    quad: Path, write_spec: Any, extra: dict[str, Any], words: str
) -> None:
    spec = {"name": "quad", **extra, **_quad()}
    path = write_spec(spec)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and words in result.output, result.output


def test_directions_for_the_trainer_need_the_metrics_named(write_spec: Any) -> None:
    spec = tiny_spec(directions=["maximize", "minimize"])
    del spec["metric"]
    result = runner.invoke(app, ["validate", str(write_spec(spec))])
    assert result.exit_code == 2 and "directions: name the trainer's metrics" in result.output


def test_validate_and_the_run_header_show_metric_and_direction(quad: Path, write_spec: Any) -> None:
    result = runner.invoke(app, ["validate", str(write_spec(_quad()))])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("metric value (minimize)"), result.output

    stream = io.StringIO()
    PlainProgress(Console(file=stream, width=200)).started(
        spec_from_dict(_quad(direction="maximize")),
        "sqlite:///x.db",
        [WorkerPlan(0, "cpu", None, 1)],
        6,
    )
    assert "study quad on sqlite:///x.db: metric value (maximize), budget 6 trials" in (
        stream.getvalue()
    )


@pytest.mark.slow
def test_a_quadratic_without_a_metric_is_minimised_end_to_end(quad: Path) -> None:
    """The issue's case: ``(x - 2) ** 2`` came back maximised as "best val_accuracy: 41"."""
    result = hpo.run(_quad(), storage=f"sqlite:///{quad / 'q.db'}", workers=1)
    assert result.exit_code == 0 and result.metric == "value"
    values = [t.value for t in result.study.trials]
    assert result.summary.best_value == min(values)
    assert result.study.direction.name == "MINIMIZE"
