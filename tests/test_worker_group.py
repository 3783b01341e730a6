"""Trials that span several processes (``resources: {gpus_per_trial: 2}``) on the CPU (gloo),
through the worker path: rank 0 claims, reports and checkpoints; the other rank follows."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from conftest import pythonpath
from optuna.trial import TrialState
from test_run import _wait_for, finish, hpo, trials_of

from hpo.spec import load_spec
from hpo.study import prepare
from hpo.worker import WorkerContext, run_worker

pytestmark = pytest.mark.slow

#: No batch norm, no dropout: 1 and 2 processes differ only in the order of float additions.
_MODELS = """
import time
from torch import nn


def mlp(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    inputs = in_channels * image_size * image_size
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, 32), nn.ReLU(), nn.Linear(32, num_classes))


class Paced(nn.Module):
    \"\"\"Every training batch takes 30 ms more: epochs of ~0.5 s, so a kill lands mid-trial.\"\"\"

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        if self.training:
            time.sleep(0.03)
        return self.inner(x)


def paced(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return Paced(mlp(num_classes, in_channels, image_size))


class OomOnRank1(nn.Module):
    \"\"\"Rank 1 alone runs out of 'memory' on training batches above 16 samples.\"\"\"

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        import torch
        import torch.distributed as dist

        if self.training and dist.get_rank() == 1 and x.shape[0] > 16:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated on rank 1)")
        return self.inner(x)


def oom_on_rank1(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return OomOnRank1(mlp(num_classes, in_channels, image_size))
"""


def _spec(name: str, ranks: int, **overrides: object) -> dict:
    train = {"model": "models:mlp", "dataset": "digits", "epochs": 3, "batch_size": 64}
    spec: dict = {
        "name": name,
        "metric": {"name": "val_accuracy", "direction": "maximize"},
        "sampler": {"type": "random", "seed": 0},
        "pruner": {"type": "none"},
        "budget": {"n_trials": 1},
        "resources": {"gpus_per_trial": ranks},
        "space": {"lr": {"type": "float", "low": 0.05, "high": 0.2}},
        "train": {**train, "num_workers": 0, "optimizer": "sgd"},
    }
    return {**spec, **overrides}


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "models.py").write_text(_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", pythonpath(tmp_path))
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    return tmp_path


def test_two_processes_report_the_curve_of_one(write_spec, tmp_path: Path, models: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    one = load_spec(write_spec(_spec("one", 1), "one.yaml"))
    prepare(one, url)
    assert run_worker(WorkerContext(one, url), threading.Event(), lambda e: None) == 0

    two = write_spec(_spec("two", 2), "two.yaml")
    proc = hpo("run", str(two), "--device", "cpu", "--workers", "1", cwd=tmp_path)
    out = finish(proc, timeout=120)
    assert proc.returncode == 0, out

    [single], [double] = trials_of(url, "one"), trials_of(url, "two")
    assert double.state == TrialState.COMPLETE and double.params == single.params
    assert len(double.user_attrs["group_pids"]) == 2
    assert sorted(double.intermediate_values) == [1, 2, 3]
    for step, value in single.intermediate_values.items():
        assert double.intermediate_values[step] == pytest.approx(value, abs=1e-6), step


def test_a_pruned_trial_stops_both_ranks_and_a_failed_one_restarts_the_group(
    write_spec, tmp_path: Path, models: Path
) -> None:
    """Grid order (seed 5): lr 0.2, 1e-6, 1e12, 2e-6. The tiny lrs learn nothing in an epoch
    and are pruned at epoch 1 by the median of the first; lr 1e12 fails (the loss overflows)
    on both ranks. The group trains the trial after a pruned one only if rank 1 left it at
    rank 0's word, and the trial after the failure only with its restarted peer."""
    spec = _spec(
        "pruned",
        2,
        sampler={"type": "grid", "seed": 5},
        pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        budget={"n_trials": 4},
        retry={"max_retries": 0},
        space={"lr": {"type": "categorical", "choices": [0.2, 1e-6, 2e-6, 1e12]}},
    )
    proc = hpo("run", str(write_spec(spec)), "--device", "cpu", "--workers", "1", cwd=tmp_path)
    out = finish(proc, timeout=120)
    assert proc.returncode == 0, out

    trials = trials_of(f"sqlite:///{tmp_path / 'hpo.db'}", "pruned")
    assert [t.params["lr"] for t in trials] == [0.2, 1e-6, 1e12, 2e-6]
    by_lr = {t.params["lr"]: t for t in trials}
    assert by_lr[0.2].state == TrialState.COMPLETE
    for lr in (1e-6, 2e-6):
        assert by_lr[lr].state == TrialState.PRUNED
        assert sorted(by_lr[lr].intermediate_values) == [1]
    failed = by_lr[1e12]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"].startswith("non_finite_loss"), failed.user_attrs
    assert len({pid for t in trials for pid in t.user_attrs["group_pids"]}) == 3  # rank 1 anew
    log = next((tmp_path / "hpo-logs").glob("*-w0.log")).read_text()
    assert log.count("rank 1: stopped at epoch 1 (rank 0's decision)") == 2
    assert log.count("restarting its processes") == 1


def test_killing_rank_1_requeues_the_trial_and_the_retry_resumes(
    write_spec, tmp_path: Path, models: Path
) -> None:
    epochs = 8  # the retry's kill lands after epoch 2, well before the last
    spec = _spec("killed", 2, train={**_spec("x", 2)["train"], "model": "models:paced"})
    spec["train"]["epochs"] = epochs
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = hpo("run", str(write_spec(spec)), "--device", "cpu", "--workers", "1", cwd=tmp_path)

    def two_epochs() -> bool:
        try:
            running = [t for t in trials_of(url, "killed") if t.state == TrialState.RUNNING]
        except KeyError:
            return False
        return bool(running) and len(running[0].intermediate_values) >= 2

    _wait_for(two_epochs, timeout=90)
    victim = next(t for t in trials_of(url, "killed") if t.state == TrialState.RUNNING)
    rank0, rank1 = victim.user_attrs["group_pids"]
    os.kill(rank1, signal.SIGKILL)
    out = finish(proc, timeout=120)

    assert proc.returncode == 0, out
    trials = trials_of(url, "killed")
    victim = next(t for t in trials if t.number == victim.number)
    assert victim.state == TrialState.FAIL
    assert victim.user_attrs["fail_reason"] == "worker died (exit 3)"
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == victim.number)
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["resumed_from_epoch"] >= 2
    assert rank0 not in retry.user_attrs["group_pids"], "the group was restarted"
    assert sorted(retry.intermediate_values) == list(range(1, epochs + 1))


def test_out_of_memory_on_rank_1_splits_the_batch_of_the_whole_group(
    write_spec, tmp_path: Path, models: Path
) -> None:
    """Each rank takes 32 of a batch of 64; rank 1 fails above 16: the group restarts with
    micro-batches of 32 (16 per rank) and accumulation 2, the same effective batch."""
    spec = _spec("oom", 2, train={**_spec("x", 2)["train"], "model": "models:oom_on_rank1"})
    proc = hpo("run", str(write_spec(spec)), "--device", "cpu", "--workers", "1", cwd=tmp_path)
    out = finish(proc, timeout=120)
    assert proc.returncode == 0, out

    [trial] = trials_of(f"sqlite:///{tmp_path / 'hpo.db'}", "oom")
    assert trial.state == TrialState.COMPLETE, trial.user_attrs
    attrs = trial.user_attrs
    assert (attrs["oom_restarts"], attrs["batch_size"], attrs["accumulate"]) == (1, 32, 2)
    assert sorted(trial.intermediate_values) == [1, 2, 3]
