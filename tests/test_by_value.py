"""Objectives given to ``hpo.run`` as functions: a notebook's (``__main__``) runs in the
workers by value; what a worker cannot load is refused before the study exists, in one line;
a failed run always says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import pythonpath

import hpo
from hpo.errors import SpecError


def _spec(name: str = "nb") -> dict[str, Any]:
    return {
        "name": name,
        "sampler": {"type": "random", "seed": 0},
        "pruner": {"type": "none"},
        "budget": {"n_trials": 3},
        "space": {"x": {"type": "float", "low": -10, "high": 10}},
    }


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    return tmp_path


def _nothing_written(directory: Path) -> None:
    assert not list(directory.glob("*.db")) and not (directory / "hpo-logs").exists()


def test_a_main_reference_is_refused_before_the_study_exists(here: Path) -> None:
    """The issue's case: workers cannot import ``__main__`` (a notebook); it was exit 1,
    error None, and a study with WAITING trials."""
    with pytest.raises(SpecError) as caught:
        hpo.run({**_spec(), "objective": "__main__:objective"}, storage="sqlite:///nb.db")
    message = str(caught.value)
    assert message.startswith("spec: objective: '__main__:objective' is defined in a notebook")
    assert "hpo.run(spec, objective=objective)" in message and "\n" not in message
    _nothing_written(here)


NOTEBOOK = """
import sys
import hpo

OFFSET = 2.0  # a global of the notebook's, shipped with the function

def objective(params, report):
    return (params["x"] - OFFSET) ** 2

spec = {spec!r}
result = hpo.run(spec, objective=objective, storage="sqlite:///nb.db", workers=1)
print("exit", result.exit_code, result.error, result.metric, file=sys.stderr)
sys.exit(result.exit_code)
"""


@pytest.mark.slow
def test_a_function_defined_in_main_runs_in_the_workers(here: Path) -> None:
    script = here / "notebook.py"
    script.write_text(NOTEBOOK.format(spec=_spec()))
    env = {**os.environ, "PYTHONPATH": pythonpath()}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=here, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "exit 0 None value" in done.stderr
    study = optuna.load_study(study_name="nb", storage=f"sqlite:///{here / 'nb.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert all(t.value == pytest.approx((t.params["x"] - 2.0) ** 2) for t in study.trials)
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("hpo-objective-*/objective.pkl"))


@pytest.mark.slow
def test_a_lambda_in_the_spec_dict_runs_too(here: Path) -> None:
    result = hpo.run(
        {
            **_spec("lam"),
            "objective": lambda params, report: params["x"] ** 2,
            "direction": "maximize",
        },
        storage="sqlite:///nb.db",
        workers=1,
    )
    assert result.exit_code == 0 and result.error is None
    assert result.summary.counts["COMPLETE"] == 3
    assert result.study.direction.name == "MAXIMIZE"


def test_a_function_a_worker_cannot_load_is_refused_in_one_line(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module the notebook put on its own ``sys.path`` (not on the workers')."""
    private = here / "private"
    private.mkdir()
    (private / "nbhelper_xq.py").write_text("def score(x):\n    return x * x\n")
    monkeypatch.syspath_prepend(str(private))
    import nbhelper_xq  # type: ignore[import-not-found]

    def objective(params: dict[str, Any], report: Any) -> float:
        return float(nbhelper_xq.score(params["x"]))

    with pytest.raises(SpecError) as caught:
        hpo.run(_spec(), objective=objective, storage="sqlite:///nb.db")
    message = str(caught.value)
    assert message.startswith("objective: ") and "\n" not in message
    assert "a worker process cannot load it: ModuleNotFoundError" in message
    assert "nbhelper_xq" in message
    _nothing_written(here)


def test_a_function_from_a_module_file_is_passed_by_name(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpo.spec.by_value import importable, reference, shipped

    (here / "namedobj_xq.py").write_text("def objective(params, report):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(here))
    import namedobj_xq  # type: ignore[import-not-found]

    assert importable(namedobj_xq.objective) and not importable(lambda p, r: 0.0)
    with shipped(namedobj_xq.objective) as (ref, env):
        assert ref == reference(namedobj_xq.objective) == "namedobj_xq:objective" and env == {}
    with pytest.raises(SpecError, match="^objective: 3 is not a function$"):
        hpo.run(_spec(), objective=3)  # type: ignore[arg-type]


CRASH = "import os\ndef objective(params, report):\n    os._exit(1)\n"


@pytest.mark.slow
def test_a_failed_run_always_says_why(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (here / "crashobj_xq.py").write_text(CRASH)
    monkeypatch.syspath_prepend(str(here))
    monkeypatch.setenv("PYTHONPATH", pythonpath(here))
    result = hpo.run(
        {**_spec("crash"), "objective": "crashobj_xq:objective"},
        storage="sqlite:///nb.db",
        workers=1,
        logs_dir=here / "logs",
    )
    assert result.exit_code == 1
    assert result.error is not None and result.error.startswith("a worker failed")
    assert str(here / "logs") in result.error
