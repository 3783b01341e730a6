"""User values (params, study names, paths) print as they are, in every command's output:
rich markup in them is text, never style (``"[bold]a[/bold]"`` printed as ``a`` before)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from conftest import tiny_spec
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial
from typer.testing import CliRunner

from hpo import cli
from hpo.cli import app
from hpo.study import Snapshot

runner = CliRunner()
CHOICE = "[bold]a[/bold]"
NOTE = "[red]b[/red]"


def _study(url: str) -> None:
    study = optuna.create_study(study_name="tiny", storage=url, direction="maximize")
    dist = {"optimizer": CategoricalDistribution([CHOICE, "sgd"])}
    for value in (0.5, 0.9):
        study.add_trial(
            create_trial(
                value=value,
                params={"optimizer": CHOICE},
                distributions=dist,
                user_attrs={"node": NOTE},
            )
        )


def test_status_best_and_the_run_summary_print_values_as_they_are(
    write_spec: Any, tmp_path: Path, capsys: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    _study(url)
    spec = str(write_spec(tiny_spec()))

    status = runner.invoke(app, ["status", spec, "--storage", url], env={"COLUMNS": "200"})
    best = runner.invoke(app, ["best", spec, "--storage", url])

    assert status.exit_code == 0 and best.exit_code == 0, status.output + best.output
    assert f"optimizer={CHOICE}" in status.output and f"{NOTE}/w-" in status.output
    assert f"params: optimizer={CHOICE}" in best.output
    assert json.loads(runner.invoke(app, ["best", spec, "--storage", url, "--json"]).output)[
        "params"
    ] == {"optimizer": CHOICE}

    cli._print_summary(Snapshot({"COMPLETE": 2}, 0.9, {"optimizer": CHOICE}, 1), "val_accuracy")
    assert f"best params: optimizer={CHOICE}" in capsys.readouterr().out
