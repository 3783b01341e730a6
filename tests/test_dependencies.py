"""What the README shows works after ``pip install hpo``: its imports are declared."""

from __future__ import annotations

import re
from pathlib import Path

import optuna

ROOT = Path(__file__).parent.parent


def _dependencies() -> list[str]:
    """The names in pyproject.toml's ``dependencies = [...]`` (no tomllib on Python 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.M | re.S)
    assert block is not None
    return re.findall(r'^\s*"([A-Za-z0-9_.\-]+)', block.group(1), re.M)


def test_trials_dataframe_works_and_pandas_is_a_dependency(tmp_path: Path) -> None:
    """The README shows ``result.study.trials_dataframe()``: Optuna needs pandas for it."""
    assert "pandas" in _dependencies()
    study = optuna.create_study(study_name="df", storage=f"sqlite:///{tmp_path / 'df.db'}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    frame = study.trials_dataframe()
    assert len(frame) == 2 and "params_x" in frame.columns


def test_cloudpickle_is_a_dependency() -> None:
    """hpo.run(objective=fn) ships a notebook's function to the workers with it."""
    assert "cloudpickle" in _dependencies()
