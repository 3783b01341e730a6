"""Never lose a trial's work: checkpoints every epoch, resume after a crash, best-model
artifacts, and out-of-memory recovery with micro-batches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest
import torch
from conftest import tiny_spec
from optuna.trial import TrialState
from test_run import _wait_for, finish, hpo, trials_of

from hpo.models import MODELS, ModelEntry, build_model
from hpo.spec import StudySpec
from hpo.study import next_trial, prepare
from hpo.study.artifacts import TrialFiles, open_store
from hpo.worker import WorkerContext, run_trial, run_worker


def test_best_model_artifact_downloads_and_loads(write_spec, tmp_path: Path) -> None:
    spec = write_spec(tiny_spec("art", budget={"n_trials": 2}))
    proc = hpo("run", str(spec), "--workers", "1", cwd=tmp_path)
    assert finish(proc) and proc.returncode == 0

    best = subprocess.run(
        [sys.executable, "-m", "hpo", "best", str(spec), "--json", "--download", "weights"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert best.returncode == 0, best.stderr
    record = json.loads(best.stdout)
    payload = torch.load(tmp_path / record["weights"], weights_only=False)
    model = build_model("cnn", num_classes=10, in_channels=1, image_size=8)
    model.load_state_dict(payload["model"])  # the downloaded weights fit the model
    assert payload["params"] == record["params"]
    assert payload["metrics"]["val_accuracy"] == pytest.approx(record["value"])
    # checkpoints are dropped once trials end; only the best models remain
    assert not list((tmp_path / "hpo-artifacts").glob("checkpoint-*"))


@pytest.mark.slow
def test_killed_trial_resumes_from_its_last_checkpoint(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        tiny_spec("resume", budget={"n_trials": 1}, train={**tiny_spec()["train"], "epochs": 40})
    )
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = hpo("run", str(spec), "--workers", "1", cwd=tmp_path)

    def three_epochs() -> bool:
        try:
            running = [t for t in trials_of(url, "resume") if t.state == TrialState.RUNNING]
        except KeyError:
            return False
        return (
            bool(running)
            and len(running[0].intermediate_values) >= 3
            and "pid" in running[0].user_attrs
        )

    _wait_for(three_epochs, timeout=120)
    victim = next(t for t in trials_of(url, "resume") if t.state == TrialState.RUNNING)
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    out = finish(proc)

    assert proc.returncode == 0, out
    trials = trials_of(url, "resume")
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == victim.number)
    assert retry.state == TrialState.COMPLETE
    resumed = retry.user_attrs["resumed_from_epoch"]
    assert resumed >= 3, "no finished epoch is repeated"
    assert sorted(retry.intermediate_values) == list(range(1, 41)), "the curve is continuous"
    for step in range(1, resumed + 1):  # the resumed part is the killed trial's own history
        assert retry.intermediate_values[step] == pytest.approx(victim.intermediate_values[step])


_PACED = """
import time
from torch import nn


class Paced(nn.Module):
    \"\"\"A linear model whose every training batch takes 30 ms more: epochs of ~0.7 s, so
    the test's SIGTERM lands within an epoch or two of the one it waited for.\"\"\"

    def __init__(self, inputs: int, num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(inputs, num_classes))

    def forward(self, x):
        if self.training:
            time.sleep(0.03)
        return self.net(x)


def model(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return Paced(in_channels * image_size * image_size, num_classes)
"""


@pytest.mark.slow
def test_a_trial_preempted_five_times_still_completes_resuming_each_time(
    write_spec, tmp_path: Path
) -> None:
    """Spot capacity: SIGTERM the node five times in a row, ``max_retries: 1``. Preemption
    never uses up a retry; each retry resumes from the last checkpoint and records that as
    soon as it starts. The model paces its epochs (a user model beside the spec): with the
    registry's CNN an epoch of digits took ~0.2 s, and a retry ran to the end between two
    polls of the storage before the fifth SIGTERM."""
    epochs = 24
    (tmp_path / "paced.py").write_text(_PACED)
    spec = write_spec(
        tiny_spec(
            "spot",
            budget={"n_trials": 1},
            retry={"max_retries": 1},
            train={**tiny_spec()["train"], "model": "paced:model", "epochs": epochs},
        )
    )
    url = f"sqlite:///{tmp_path / 'hpo.db'}"

    def epochs_beyond(done: int) -> bool:
        try:
            running = [t for t in trials_of(url, "spot") if t.state == TrialState.RUNNING]
        except KeyError:
            return False
        return bool(running) and len(running[0].intermediate_values) > done

    done = 0
    for _ in range(5):
        node = hpo("run", str(spec), "--workers", "1", cwd=tmp_path)
        _wait_for(lambda done=done: epochs_beyond(done + 1), timeout=120)
        node.send_signal(signal.SIGTERM)
        out = finish(node, timeout=60)
        assert node.returncode == 0, out
        trials = trials_of(url, "spot")
        latest = trials[-2]  # the preempted one; its retry is the last, WAITING
        assert trials[-1].state == TrialState.WAITING, out
        assert latest.user_attrs["fail_reason"].startswith("interrupted")
        if latest.number > 0:  # a retry says it resumed while it ran, not only at its end
            assert latest.user_attrs["resumed_from_epoch"] >= done
        done = len(latest.intermediate_values) - 1  # the last epoch may not be checkpointed

    final = hpo("run", str(spec), "--workers", "1", cwd=tmp_path)
    out = finish(final)
    assert final.returncode == 0, out
    trials = trials_of(url, "spot")
    assert [t.state for t in trials] == [TrialState.FAIL] * 5 + [TrialState.COMPLETE]
    done_trial = trials[-1]
    assert done_trial.system_attrs["failed_trial"] == 0
    assert done_trial.system_attrs["hpo:failures"] == 0
    assert done_trial.user_attrs["resumed_from_epoch"] >= 5
    assert sorted(done_trial.intermediate_values) == list(range(1, epochs + 1))
    assert "fail_reason" not in done_trial.user_attrs


class _OomAbove(torch.nn.Module):
    """A model that runs out of 'memory' on batches above ``limit`` samples."""

    def __init__(self, inner: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit = inner, limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit and self.training:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.inner(x)


@pytest.fixture
def oom_model(monkeypatch) -> str:
    base = MODELS["cnn"]
    monkeypatch.setitem(
        MODELS,
        "oom16",
        ModelEntry(lambda c, i, s: _OomAbove(base.builder(c, i, s), 16), base.min_size),
    )
    return "oom16"


def _one_trial(sqlite_url: str, spec: StudySpec, tmp_path: Path):
    handle = prepare(spec, sqlite_url)
    trial = next_trial(handle.study, handle.storage, spec)
    assert trial is not None
    files = TrialFiles(open_store(str(tmp_path / "art")), spec.name)
    return run_trial(trial, spec, "cpu", threading.Event(), lambda e: None, files)


def test_oom_restarts_with_micro_batches_of_the_same_effective_batch(
    sqlite_url: str, tmp_path: Path, oom_model: str
) -> None:
    spec = StudySpec.model_validate(
        tiny_spec(
            "oom",
            budget={"n_trials": 1},
            # A fifth of digits: each restart happens on the first batch, then 2 short epochs.
            train={
                **tiny_spec()["train"],
                "model": oom_model,
                "batch_size": 64,
                "epochs": 2,
                "fraction": 0.2,
            },
        )
    )
    outcome = _one_trial(sqlite_url, spec, tmp_path)

    assert outcome.state == TrialState.COMPLETE, outcome.reason
    assert outcome.attrs["oom_restarts"] == 2
    assert outcome.attrs["batch_size"] * outcome.attrs["accumulate"] == 64
    assert outcome.attrs["batch_size"] == 16


def test_oom_fail_policy_records_the_reason(
    sqlite_url: str, tmp_path: Path, oom_model: str
) -> None:
    spec = StudySpec.model_validate(
        tiny_spec(
            "oomfail",
            budget={"n_trials": 1},
            retry={"on_oom": "fail"},
            train={**tiny_spec()["train"], "model": oom_model, "batch_size": 64},
        )
    )
    outcome = _one_trial(sqlite_url, spec, tmp_path)

    assert outcome.state == TrialState.FAIL
    assert outcome.reason.startswith("oom")


def test_after_an_oom_the_next_trial_in_the_same_worker_succeeds(
    sqlite_url: str, tmp_path: Path, monkeypatch
) -> None:
    (tmp_path / "oomobj.py").write_text(
        "import torch\n"
        "calls = []\n"
        "def objective(params, report):\n"
        "    calls.append(1)\n"
        "    if len(calls) % 2 == 1:  # every other trial runs out of memory\n"
        "        big = torch.ones(1000, 1000)  # held by the traceback until freed\n"
        "        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')\n"
        "    report(params['x'], 1)\n"
        "    return params['x']\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = StudySpec.model_validate(
        {
            "name": "oomobj",
            "objective": "oomobj:objective",
            "metric": {"name": "score"},
            "sampler": {"type": "random", "seed": 3},
            "pruner": {"type": "none"},
            "budget": {"n_trials": 6},
            "space": {"x": {"type": "float", "low": 0, "high": 1}},
        }
    )
    prepare(spec, sqlite_url)
    ctx = WorkerContext(spec=spec, storage_url=sqlite_url, artifacts=str(tmp_path / "art"))
    assert run_worker(ctx, threading.Event(), lambda e: None) == 0

    trials = optuna.load_study(study_name="oomobj", storage=sqlite_url).get_trials()
    oom = [t for t in trials if t.state == TrialState.FAIL]
    assert oom and all(t.user_attrs["fail_reason"].startswith("oom") for t in oom)
    later = [t for t in trials if t.number > oom[0].number and t.state == TrialState.COMPLETE]
    assert later, "a trial after the OOM completed in the same worker"


def test_checkpoints_round_trip_with_torch_loaded_and_as_plain_pickle(tmp_path: Path) -> None:
    files = TrialFiles(open_store(str(tmp_path / "art")), "rt")
    files.save_checkpoint(0, {"w": torch.ones(2), "epoch": 3})  # torch is loaded: torch.save
    assert (tmp_path / "art" / "checkpoint-rt-0").read_bytes().startswith(b"PK")
    state = files.load_checkpoint(0)
    assert state is not None and state["epoch"] == 3 and torch.equal(state["w"], torch.ones(2))

    import pickle

    (tmp_path / "art" / "checkpoint-rt-1").write_bytes(pickle.dumps({"epoch": 2}))
    assert files.load_checkpoint(1) == {"epoch": 2}  # as saved where torch was not loaded
    files.drop_checkpoint(1)
    assert files.load_checkpoint(1) is None


def _best_epoch_spec(name: str, direction: str, **train: object) -> StudySpec:
    return StudySpec.model_validate(
        tiny_spec(
            name,
            metric={"name": "train_loss", "direction": direction},
            train={**tiny_spec()["train"], "fraction": 0.2, **train},
        )
    )


def test_min_delta_best_epoch_is_the_one_value_and_best_model_agree_on() -> None:
    # A min_delta no epoch can beat: the trainer's best epoch stays 1 although train_loss falls.
    spec = _best_epoch_spec("mindelta", "minimize", epochs=3, min_delta=100.0)
    study = optuna.create_study(direction="minimize")
    outcome = run_trial(study.ask(), spec, "cpu", threading.Event(), lambda e: None)

    assert outcome.state == TrialState.COMPLETE, outcome.reason
    assert outcome.attrs["best_epoch"] == 1
    assert outcome.best_model is not None and outcome.best_model["epoch"] == 1
    assert outcome.value == outcome.best_model["metrics"]["train_loss"]


def test_a_resumed_trial_keeps_its_predecessors_best_epoch_weights(
    sqlite_url: str, tmp_path: Path
) -> None:
    # train_loss maximized: epoch 1 is the best, and it was trained before the crash.
    spec = _best_epoch_spec("resumebest", "maximize", epochs=4)
    handle = prepare(spec, sqlite_url)
    files = TrialFiles(open_store(str(tmp_path / "art")), spec.name)
    stop = threading.Event()

    def crash_after_two(event: dict) -> None:
        if event.get("event") == "epoch" and event["epoch"] == 2:
            stop.set()

    first = next_trial(handle.study, handle.storage, spec)
    assert first is not None
    crashed = run_trial(first, spec, "cpu", stop, crash_after_two, files)
    assert crashed.interrupted and crashed.best_model is None
    assert files.load_checkpoint(first.number) is not None

    handle.study.enqueue_trial(first.params)  # a retry runs its predecessor's params
    retry = handle.study.ask()
    outcome = run_trial(retry, spec, "cpu", threading.Event(), lambda e: None, files, first.number)
    assert outcome.state == TrialState.COMPLETE, outcome.reason
    assert outcome.attrs["resumed_from_epoch"] == 2 and outcome.attrs["best_epoch"] == 1
    assert outcome.best_model is not None and outcome.best_model["epoch"] == 1
    assert outcome.value == outcome.best_model["metrics"]["train_loss"]
