"""Custom objectives in the worker: Optuna's ``fn(trial)`` on hpo's fast path, progress events,
the stop flag, pruning, and ``hpo.checkpoint`` resuming a retried trial. In-process, no training."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import hpo
from hpo.spec import StudySpec
from hpo.study import next_trial, prepare
from hpo.worker import WorkerContext, run_trial, run_worker


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    name = f"obj_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _spec(name: str, ref: str, **overrides: Any) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": name,
            "objective": ref,
            "metric": {"name": "score"},
            "sampler": {"type": "random", "seed": 0},
            "pruner": {"type": "none"},
            "budget": {"n_trials": 3},
            "space": {"x": {"type": "float", "low": 0, "high": 1}},
            **overrides,
        }
    )


TRIAL_FORM = """
import optuna


def objective(trial: optuna.Trial) -> float:
    x = trial.params["x"]  # the spec's space, already suggested
    assert trial.suggest_float("x", 0, 1) == x
    y = trial.suggest_int("y", 0, 3)  # suggested in code
    for step in (1, 2):
        trial.report(x + y + step, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x + y
"""


def test_trial_form_runs_on_the_worker_with_progress_events(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec("trialform", f"{_module(tmp_path, monkeypatch, TRIAL_FORM)}:objective")
    prepare(spec, sqlite_url)
    events: list[dict[str, Any]] = []
    ctx = WorkerContext(spec=spec, storage_url=sqlite_url, artifacts=str(tmp_path / "art"))

    assert run_worker(ctx, threading.Event(), events.append) == 0

    trials = optuna.load_study(study_name="trialform", storage=sqlite_url).get_trials()
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert set(t.params) == {"x", "y"}
        assert t.value == pytest.approx(t.params["x"] + t.params["y"])
        assert sorted(t.intermediate_values) == [1, 2]
        epochs = [e for e in events if e["event"] == "epoch" and e["trial"] == t.number]
        assert [e["epoch"] for e in epochs] == [1, 2]
        assert epochs[-1]["value"] == pytest.approx(t.intermediate_values[2])


def _one(sqlite_url: str, spec: StudySpec, stop: threading.Event | None = None) -> Any:
    handle = prepare(spec, sqlite_url)
    trial = next_trial(handle.study, handle.storage, spec)
    assert trial is not None
    return run_trial(trial, spec, "cpu", stop or threading.Event(), lambda e: None)


def test_trial_form_pruned_by_user_code_and_stopped_at_the_next_report(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _module(
        tmp_path,
        monkeypatch,
        "import optuna\n"
        "def pruned(trial):\n"
        "    trial.report(0.25, 1)\n"
        "    raise optuna.TrialPruned('user says so')\n"
        "def endless(trial):\n"
        "    for step in range(1, 1000):\n"
        "        try:\n"
        "            trial.report(1.0, step)\n"
        "        except Exception:\n"
        "            pass  # user code that swallows errors still stops\n"
        "    return 1.0\n",
    )
    pruned = _one(sqlite_url, _spec("pruned", f"{name}:pruned"))
    assert pruned.state == TrialState.PRUNED and pruned.value == 0.25

    stop = threading.Event()
    stop.set()  # Ctrl-C or SIGTERM arrived: the trial stops at its next report
    stopped = _one(sqlite_url, _spec("stopped", f"{name}:endless"), stop)
    assert stopped.state == TrialState.FAIL and stopped.interrupted


RESUMING = """
import hpo


def objective(trial):
    ckpt = hpo.checkpoint(trial)
    state = ckpt.load() or {"epoch": 0}
    if state["epoch"]:
        trial.set_user_attr("resumed_from", state["epoch"])
    for epoch in range(state["epoch"] + 1, 5):
        state["epoch"] = epoch
        ckpt.save(state)
        trial.report(float(epoch), epoch)
        if epoch == 2 and "resumed_from" not in trial.user_attrs:
            raise RuntimeError("crashed after epoch 2")
    return float(state["epoch"])
"""


def test_checkpoint_helper_resumes_a_retried_trial_and_is_dropped_after(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(
        "resume", f"{_module(tmp_path, monkeypatch, RESUMING)}:objective", budget={"n_trials": 1}
    )
    prepare(spec, sqlite_url)
    ctx = WorkerContext(spec=spec, storage_url=sqlite_url, artifacts=str(tmp_path / "art"))

    assert run_worker(ctx, threading.Event(), lambda e: None) == 0

    first, retry = optuna.load_study(study_name="resume", storage=sqlite_url).get_trials()
    assert (
        first.state == TrialState.FAIL
        and "crashed after epoch 2" in first.user_attrs["fail_reason"]
    )
    assert retry.state == TrialState.COMPLETE and retry.system_attrs["failed_trial"] == 0
    assert retry.user_attrs["resumed_from"] == 2 and retry.value == 4.0
    assert sorted(retry.intermediate_values) == [3, 4]  # no epoch repeated
    assert not list((tmp_path / "art").glob("checkpoint-*")), "dropped once the result is in"


THREADS = """
import sys


def objective(trial):
    trial.set_user_attr("torch_loaded", "torch" in sys.modules)
    import torch

    trial.set_user_attr("threads", torch.get_num_threads())
    return 0.0
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one thread is the default on one core")
def test_worker_leaves_torch_to_the_objective_and_still_sets_its_threads(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process with a custom objective does not import torch (seconds per process);
    an objective that imports torch itself still gets the worker's thread count."""
    ref = f"{_module(tmp_path, monkeypatch, THREADS)}:objective"
    spec = _spec("threads", ref, budget={"n_trials": 1})
    prepare(spec, sqlite_url)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    path = os.pathsep.join(p for p in (str(tmp_path), env.get("PYTHONPATH")) if p)
    env.update(HPO_STORAGE=sqlite_url, PYTHONPATH=path)
    worker = subprocess.run(
        [sys.executable, "-m", "hpo.worker", "--threads", "1"],
        input=spec.model_dump_json(exclude_unset=True),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert worker.returncode == 0, worker.stderr
    (trial,) = optuna.load_study(study_name="threads", storage=sqlite_url).get_trials()
    assert trial.state == TrialState.COMPLETE, worker.stderr
    assert trial.user_attrs["torch_loaded"] is False
    assert trial.user_attrs["threads"] == 1


def test_checkpoint_outside_a_worker_keeps_nothing() -> None:
    study = optuna.create_study()

    def objective(trial: optuna.Trial) -> float:
        ckpt = hpo.checkpoint(trial)
        ckpt.save({"epoch": 1})
        return 0.0 if ckpt.load() is None else 1.0

    study.optimize(objective, n_trials=1)
    assert study.best_value == 0.0
