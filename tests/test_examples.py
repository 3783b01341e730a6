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
