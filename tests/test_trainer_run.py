"""How a run proceeds: early stopping, checkpoint/resume, auto batch size, the worker's records."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import optuna
import pytest
import torch
from conftest import TINY_TRAIN, tiny_spec

from hpo.spec import StudySpec
from hpo.trainer import TrainConfig, autobatch, fit
from hpo.trainer.stopping import EarlyStopping
from hpo.worker.trial import run_trial

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


def _config(**overrides: object) -> TrainConfig:
    return TrainConfig.model_validate({**TINY_TRAIN, **overrides})


def test_early_stopping_counts_epochs_without_improvement() -> None:
    stopper = EarlyStopping("val_accuracy", "maximize", patience=2, min_delta=0.01)
    values = [0.5, 0.6, 0.605, 0.7, 0.69, 0.695]
    stops = [stopper.update(e, {"val_accuracy": v}) for e, v in enumerate(values, 1)]
    assert stops == [False, False, False, False, False, True]  # 0.605: not by min_delta
    assert (stopper.best_epoch, stopper.best_value) == (4, 0.7)


def test_patience_stops_the_run_at_the_right_epoch() -> None:
    # Training loss falls every epoch, so "maximize train_loss" never improves after epoch 1.
    seen: list[int] = []
    config = _config(epochs=6, patience=2, fraction=0.2, lr=0.05)
    result = fit(config, CPU, lambda e, m: seen.append(e), monitor=("train_loss", "maximize"))
    assert seen == [1, 2, 3] and result.stopped_early
    assert result.best_epoch == 1 and result.epochs_run == 3
    full = fit(_config(epochs=2, fraction=0.2), CPU, lambda e, m: None)
    assert not full.stopped_early and full.best_epoch in (1, 2)


def _weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    return state["model"]


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run() -> None:
    config = _config(
        epochs=4,
        fraction=0.25,
        deterministic=True,
        dropout=0.3,  # global RNG
        fliplr=0.5,  # augmentation RNG
        degrees=10,
        optimizer="adamw",
        warmup_epochs=1,
        patience=10,
    )
    states: dict[int, dict[str, Any]] = {}
    first = fit(config, CPU, lambda e, m: None, on_checkpoint=lambda e, s: states.update({e: s}))
    assert sorted(states) == [1, 2, 3, 4]
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "early_stopping", "history"} <= set(
        states[2]
    )
    resumed: dict[int, dict[str, Any]] = {}
    epochs: list[int] = []
    second = fit(
        config,
        CPU,
        lambda e, m: epochs.append(e),
        resume=states[2],
        on_checkpoint=lambda e, s: resumed.update({e: s}),
    )
    assert epochs == [3, 4]
    for key, value in _weights(states[4]).items():
        assert torch.equal(_weights(resumed[4])[key], value), key
    assert second.history == first.history
    torch.use_deterministic_algorithms(False)


def test_checkpoint_state_is_a_snapshot() -> None:
    states: list[dict[str, Any]] = []
    fit(
        _config(epochs=2, fraction=0.1),
        CPU,
        lambda e, m: None,
        on_checkpoint=lambda e, s: states.append(s),
    )
    assert not torch.equal(states[0]["model"]["fc.weight"], states[1]["model"]["fc.weight"])


def _limit(max_samples: int, calls: list[int]) -> autobatch.Probe:
    def probe(n: int) -> None:
        calls.append(n)
        if n > max_samples:
            raise torch.OutOfMemoryError(f"simulated: {n} > {max_samples}")

    return probe


@pytest.mark.parametrize(
    ("limit", "cap", "expected"), [(300, 4096, 300), (5000, 1000, 1000), (2, 64, 2)]
)
def test_auto_batch_finds_the_largest_that_fits(limit: int, cap: int, expected: int) -> None:
    calls: list[int] = []
    assert autobatch.largest_batch(_limit(limit, calls), cap) == expected
    assert len(calls) <= 2 * cap.bit_length() + 2  # doubling + bisection, not a linear scan


def test_auto_batch_fails_when_nothing_fits() -> None:
    with pytest.raises(torch.OutOfMemoryError):
        autobatch.largest_batch(_limit(1, []), 64)


def test_auto_batch_is_searched_once_per_key() -> None:
    made: list[int] = []

    def factory() -> autobatch.Probe:
        made.append(1)
        return _limit(100, [])

    key = ("test-model", (3, 8, 8), object())
    assert autobatch.resolve_batch_size(key, CPU, 4096, factory) == 100
    assert autobatch.resolve_batch_size(key, CPU, 4096, factory) == 100
    assert made == [1]
    assert autobatch.resolve_batch_size(key, CPU, 4096, None) == autobatch.CPU_BATCH


def test_auto_batch_search_runs_without_cudnn_autotuning() -> None:
    """Each size tried is a new input shape; with cuDNN's benchmark on, each would be
    autotuned (52 s of setup for ResNet-50 at 224 px on an H200). Training keeps it on."""
    seen: list[bool] = []

    def probe(n: int) -> None:
        seen.append(torch.backends.cudnn.benchmark)
        if n > 8:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        key = ("autotune-model", (3, 8, 8), object())
        assert autobatch.resolve_batch_size(key, CPU, 64, lambda: probe) == 8
        assert torch.backends.cudnn.benchmark is True, "restored for training"
    finally:
        torch.backends.cudnn.benchmark = before
    assert seen and not any(seen)


def test_fit_with_auto_batch_uses_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def probe_for(*args: Any) -> Callable[[], autobatch.Probe]:
        return lambda: _limit(77, calls)

    monkeypatch.setattr(autobatch, "probe_for", probe_for)
    monkeypatch.setattr(autobatch, "_FOUND", {})
    result = fit(_config(epochs=1, batch_size="auto", fraction=0.2), CPU, lambda e, m: None)
    assert result.batch_size == 77 and calls


def test_auto_batch_on_cpu_is_a_sane_default() -> None:
    result = fit(_config(epochs=1, batch_size=-1, fraction=0.2), CPU, lambda e, m: None)
    assert result.batch_size == autobatch.CPU_BATCH


def test_worker_records_early_stopping_and_passes_the_study_metric() -> None:
    spec = StudySpec.model_validate(
        tiny_spec(
            metric={"name": "train_loss", "direction": "maximize"},  # never improves after 1
            train={**TINY_TRAIN, "epochs": 5, "patience": 1, "fraction": 0.2},
        )
    )
    study = optuna.create_study(direction="maximize")
    outcome = run_trial(study.ask(), spec, "cpu", threading.Event(), lambda event: None)
    assert outcome.state == optuna.trial.TrialState.COMPLETE
    assert outcome.attrs["early_stopped"] is True and outcome.attrs["best_epoch"] == 1
    assert outcome.attrs["epochs_run"] == 2


def test_compile_wraps_the_forward_and_keeps_the_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    class Compiled(torch.nn.Module):  # stands in for torch.compile's OptimizedModule
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self._orig_mod = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(len(x))
            return self._orig_mod(x)

    monkeypatch.setattr(torch, "compile", Compiled)
    states: list[dict[str, Any]] = []
    config = _config(epochs=1, fraction=0.1, compile=True)
    fit(config, CPU, lambda e, m: None, on_checkpoint=lambda e, s: states.append(s))
    assert calls and "fc.weight" in states[0]["model"]  # the raw module's keys, no prefix


def test_channels_last_and_determinism_settings() -> None:
    from hpo.trainer.runtime import channels_last, configure

    assert channels_last(_config(model="resnet18"), torch.device("cuda"))
    assert not channels_last(_config(model="vit_b_16"), torch.device("cuda"))
    assert not channels_last(_config(model="resnet18"), CPU)
    result = fit(_config(epochs=1, fraction=0.1, channels_last=True), CPU, lambda e, m: None)
    assert result.epochs_run == 1
    configure(_config(deterministic=True), CPU)
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    configure(_config(), CPU)
    assert not torch.are_deterministic_algorithms_enabled()
