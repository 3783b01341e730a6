"""TensorBoard event files per trial: what the trainer and a custom objective write, where, and
the switch that turns them off."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import TINY_TRAIN, tiny_spec
from optuna.trial import TrialState
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

import hpo
from hpo.board import logdir, tag
from hpo.cli import app
from hpo.spec import StudySpec
from hpo.worker import run_trial


def _events(path: Path) -> EventAccumulator:
    acc = EventAccumulator(str(path))
    acc.Reload()
    return acc


def _run(spec: StudySpec, artifacts: Path, trial: optuna.Trial | None = None) -> Any:
    study = optuna.create_study(direction="maximize")
    return run_trial(
        trial or study.ask(),
        spec,
        "cpu",
        threading.Event(),
        lambda e: None,
        artifacts=str(artifacts),
    )


def test_tags_put_train_and_validation_side_by_side() -> None:
    assert tag("val_loss") == "loss/val" and tag("train_accuracy") == "accuracy/train"
    assert tag("lr") == "lr" and tag("score") == "score"


def test_a_trainer_trial_writes_its_curves_and_hparams(tmp_path: Path) -> None:
    spec = StudySpec.model_validate(tiny_spec("tb", train={**TINY_TRAIN, "fraction": 0.2}))
    outcome = _run(spec, tmp_path)
    assert outcome.state == TrialState.COMPLETE

    run = Path(logdir(str(tmp_path), "tb", 0))
    assert run == tmp_path / "tensorboard" / "tb" / "trial-0"
    acc = _events(run)
    scalars = acc.Tags()["scalars"]
    for name in ("loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr"):
        assert [e.step for e in acc.Scalars(name)] == [1, 2, 3], name
    assert "epoch_seconds" in scalars and "samples_per_second" in scalars
    val = [e.value for e in acc.Scalars("accuracy/val")]
    assert max(val) == pytest.approx(outcome.value)  # the trial's value: its best epoch
    hparams = acc.PluginTagToContent("hparams")
    assert b"lr" in hparams["_hparams_/session_start_info"]  # the trial's parameter
    assert [e.value for e in acc.Scalars("hparam/val_accuracy")] == pytest.approx([outcome.value])


def test_logging_tensorboard_false_writes_nothing(tmp_path: Path) -> None:
    spec = StudySpec.model_validate(
        tiny_spec("quiet", train={**TINY_TRAIN, "epochs": 1}, logging={"tensorboard": False})
    )
    assert _run(spec, tmp_path).state == TrialState.COMPLETE
    assert not (tmp_path / "tensorboard").exists()


def test_a_custom_objective_gets_the_writer_through_report_and_hpo_tensorboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tbobj.py").write_text(
        "import hpo\n"
        "def objective(params, report):\n"
        "    assert hpo.tensorboard() is report.writer is not None\n"
        "    for step in (1, 2):\n"
        "        report.writer.add_scalar('custom/x', params['x'] * step, step)\n"
        "        report(params['x'] * step, step)\n"
        "    return 2 * params['x']\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = StudySpec.model_validate(
        {
            "name": "tbobj",
            "objective": "tbobj:objective",
            "metric": {"name": "score"},
            "pruner": {"type": "none"},
            "budget": {"n_trials": 1},
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        }
    )
    outcome = _run(spec, tmp_path / "art")
    assert outcome.state == TrialState.COMPLETE, outcome.reason
    acc = _events(tmp_path / "art" / "tensorboard" / "tbobj" / "trial-0")
    assert [e.step for e in acc.Scalars("score")] == [1, 2]  # each report
    assert [e.step for e in acc.Scalars("custom/x")] == [1, 2]  # the objective's own
    assert hpo.tensorboard() is None  # outside a trial


def test_tensorboard_true_without_the_package_is_one_line_exit_2(
    write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # how Python marks a module absent
    spec = write_spec(tiny_spec(logging={"tensorboard": True}))
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert "logging.tensorboard: needs the 'tensorboard' package" in result.output
    assert "pip install 'hpo[tensorboard]'" in result.output
    # auto (the default) is off without it, and says so when a run starts
    assert not StudySpec.model_validate(tiny_spec()).tensorboard
