"""The runnable examples in ``examples/`` run end to end, as a user would start them."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState
from test_run import finish, hpo, trials_of

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_custom_objective_example_runs_from_another_directory(tmp_path: Path) -> None:
    # The objective module sits beside the spec: found without PYTHONPATH, from any directory.
    spec = EXAMPLES / "sgd_digits.yaml"
    proc = hpo("run", str(spec), "--n-trials", "4", "--workers", "1", cwd=tmp_path)
    out = finish(proc, timeout=120)

    assert proc.returncode == 0, out
    trials = trials_of(f"sqlite:///{tmp_path / 'hpo.db'}", "sgd_digits")
    assert len(trials) == 4, out
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), out
    for t in trials:
        assert set(t.params) == {"alpha", "loss"}  # one from the spec's space, one from code
        assert t.intermediate_values and 0.5 < max(t.intermediate_values.values()) <= 1.0
    assert not list((tmp_path / "hpo-artifacts").glob("checkpoint-*"))


def test_own_model_example_tunes_a_users_model_and_data(tmp_path: Path) -> None:
    # own_model.py (an nn.Module and a Dataset of the user's) sits beside the spec; `width` is
    # a parameter of the user's model function, tuned by the space like any train key.
    spec = EXAMPLES / "own_model.yaml"
    proc = hpo("run", str(spec), "--n-trials", "2", "--workers", "1", cwd=tmp_path)
    out = finish(proc, timeout=180)

    assert proc.returncode == 0, out
    trials = trials_of(f"sqlite:///{tmp_path / 'hpo.db'}", "own_model")
    assert [t.state for t in trials][0] == TrialState.COMPLETE, out
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), out
    assert all(set(t.params) == {"lr", "width", "dropout"} for t in trials)
    assert max(trials[0].intermediate_values.values()) > 0.8  # digits, an MLP, a few epochs
    assert (tmp_path / "hpo-artifacts" / "tensorboard" / "own_model" / "trial-0").is_dir()
