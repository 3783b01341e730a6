"""``best_params.yaml`` fits the study it came from: a trainer study's values go under
``train:``; a custom objective's are its arguments (no ``train:`` hint)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from conftest import tiny_spec
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from hpo.insight import write_report
from hpo.insight.report import _params_hint
from hpo.spec import StudySpec
from hpo.study import prepare, system_attrs


def _add(study: optuna.Study, name: str) -> None:
    dist = {name: FloatDistribution(0.01, 0.5)}
    for value in (0.1, 0.2):
        study.add_trial(create_trial(value=value, params={name: value}, distributions=dist))


def test_a_custom_objectives_best_params_have_no_train_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hintobj.py").write_text("def objective(params, report):\n    return 0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    spec = StudySpec.model_validate(
        {
            "name": "hint",
            "objective": "hintobj:objective",
            "pruner": {"type": "none"},
            "budget": {"n_trials": 2},
            "space": {"x": {"type": "float", "low": 0.01, "high": 0.5}},
        }
    )
    handle = prepare(spec, f"sqlite:///{tmp_path / 'h.db'}")
    _add(handle.study, "x")

    write_report(handle.study, tmp_path / "report")

    text = (tmp_path / "report" / "best_params.yaml").read_text()
    assert "train:" not in text
    assert "# the params hintobj:objective is called with" in text
    assert "warm_start: {from: <this file>}" in text
    assert yaml.safe_load(text) == {"x": 0.1}  # minimised: `value` by default


def test_the_hint_follows_the_study(tmp_path: Path) -> None:
    trainer = prepare(StudySpec.model_validate(tiny_spec()), f"sqlite:///{tmp_path / 't.db'}")
    _add(trainer.study, "lr")
    assert "`train:`" in _params_hint(system_attrs(trainer.study), trainer.study.trials)

    # a study from before hpo recorded its objective: told by its params
    old = optuna.create_study(study_name="old", storage=f"sqlite:///{tmp_path / 'o.db'}")
    _add(old, "x")
    assert _params_hint({}, old.trials).startswith("the params your objective is called with")
    assert "`train:`" in _params_hint({}, trainer.study.trials)
