"""The training run: ``fit`` sets up a :class:`Run` and runs epochs of train + validate.

After each epoch ``on_epoch(epoch, metrics)`` is called; it may raise to stop the run (the
worker raises ``optuna.TrialPruned`` there), and the exception propagates to the caller. Early
stopping (``patience``) ends the run normally, with ``TrainResult.stopped_early`` set.

The best epoch is decided here, once, by :class:`~hpo.trainer.stopping.EarlyStopping` (with its
``min_delta``): ``TrainResult.best_epoch`` / ``best_value``, and with ``on_checkpoint`` the state's
``"best"`` (that epoch's weights and metrics). Downstream (the trial's value, its checkpoint and
``best_model.pt``) reads that decision and never compares metrics itself.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from hpo.errors import NonFiniteLossError
from hpo.trainer import checkpoint
from hpo.trainer.config import TrainConfig
from hpo.trainer.distributed import Group
from hpo.trainer.setup import Run, prepare
from hpo.trainer.step import train_one_epoch, validate

__all__ = ["CheckpointCallback", "EpochCallback", "TrainResult", "fit"]

EpochCallback = Callable[[int, dict[str, float]], None]
CheckpointCallback = Callable[[int, dict[str, Any]], None]


@dataclass
class TrainResult:
    """What a finished run measured: per-epoch metrics, how it ended, its speed and memory."""

    history: list[dict[str, float]] = field(default_factory=list)
    device_name: str = "cpu"
    train_samples: int = 0
    seconds: float = 0.0
    train_seconds: float = 0.0
    peak_memory_mb: float = 0.0
    batch_size: int = 0  # the micro-batch size used (resolved when ``auto``)
    optimizer: str = ""  # the optimizer used (resolved when ``auto``)
    stopped_early: bool = False  # ended by ``patience``, not by running out of epochs
    best_epoch: int = 0  # the epoch with the best monitored metric (1-based)
    best_value: float = math.nan
    best: dict[str, Any] | None = None  # with ``on_checkpoint``: the best epoch's weights, metrics

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(1, self.epochs_run)

    @property
    def samples_per_second(self) -> float:
        return (
            self.train_samples * self.epochs_run / self.train_seconds if self.train_seconds else 0.0
        )


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _run_epoch(
    run: Run, epoch: int, should_stop: Callable[[], bool]
) -> tuple[dict[str, float], float]:
    run.enter_epoch(epoch)
    for batches in (run.train, run.val):
        batches.set_epoch(epoch)
    t0 = time.perf_counter()
    metrics = train_one_epoch(run.step, run.train, should_stop)
    seconds = time.perf_counter() - t0
    if not math.isfinite(metrics["train_loss"]):
        raise NonFiniteLossError(epoch)
    # Data-parallel: the plain module (the DDP wrapper would broadcast buffers per batch).
    forward = run.step.model if run.group is None else run.model
    metrics.update(validate(forward, run.val, run.precision, run.device, run.group))
    metrics["params_m"] = sum(p.numel() for p in run.model.parameters()) / 1e6
    return metrics, seconds


def state_dict(
    run: Run, epoch: int, history: list[dict[str, float]], best: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Everything needed to continue ``run`` after ``epoch``, as CPU copies; ``best`` is the best
    epoch's ``{"epoch", "metrics", "model"}`` (already CPU copies, kept as they are)."""
    state = checkpoint.snapshot(
        {
            "format": checkpoint.FORMAT,
            "epoch": epoch,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": {"phase": run.phase.index, **run.schedule.state_dict()},
            "scaler": run.step.scaler.state_dict(),
            "rng": checkpoint.rng_state(),
            "early_stopping": run.stopper.state_dict(),
            "history": history,
            "batch_size": run.batch_size,
        }
    )
    if run.stopper.best_epoch == epoch:  # this epoch is the best: its weights are the best's
        best = {"epoch": epoch, "metrics": state["history"][-1], "model": state["model"]}
    state["best"] = best
    return state


def _restore(run: Run, state: dict[str, Any]) -> int:
    """Load ``state`` into ``run``; returns the epoch it was taken after."""
    checkpoint.check_format(state)
    epoch = int(state["epoch"])
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])  # its groups bring back saved LRs too
    run.enter_epoch(epoch)  # the phase (frozen or not) and its schedule as they were
    run.schedule.load_state_dict(state["scheduler"])
    run.schedule.apply(run.optimizer)  # the schedule, not the saved state, decides the LR
    run.step.scaler.load_state_dict(state["scaler"])
    run.stopper.load_state_dict(state["early_stopping"])
    checkpoint.set_rng_state(state["rng"])
    return epoch


def fit(
    config: TrainConfig,
    device: torch.device,
    on_epoch: EpochCallback,
    should_stop: Callable[[], bool] = lambda: False,
    *,
    monitor: tuple[str, str] | None = None,
    resume: dict[str, Any] | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    group: Group | None = None,
) -> TrainResult:
    """Train ``config`` on ``device``, calling ``on_epoch`` (and ``on_checkpoint``) after each.

    Args:
        monitor: (metric, "maximize" | "minimize") that early stopping and ``best_epoch``
            follow; default ``("val_loss", "minimize")``. The worker passes the study's metric.
        resume: a state from ``on_checkpoint``: continue after its epoch, as if never stopped
            (bit-for-bit with ``deterministic: true``).
        on_checkpoint: called with (epoch, state) after every epoch, before ``on_epoch``;
            ``state`` holds CPU copies (model, optimizer, schedule, scaler, RNG, early
            stopping, history, and ``"best"``: the best epoch so far as ``{"epoch", "metrics",
            "model"}``, or None) and can be saved with ``torch.save``.
        group: train as one rank of a data-parallel process group (initialised by the
            caller); every rank calls ``fit`` alike and gets the same metrics, and the same
            ``resume`` state (see :mod:`hpo.trainer.distributed`).

    Raises:
        NonFiniteLossError: the training loss became NaN or infinite.
        Interrupted: ``should_stop()`` turned true.
    """
    run = prepare(
        config, device, monitor, batch_size=resume["batch_size"] if resume else None, group=group
    )
    history: list[dict[str, float]] = list(resume["history"]) if resume else []
    start = _restore(run, resume) + 1 if resume else 1
    result = TrainResult(
        best=resume.get("best") if resume else None,
        history=history,
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        train_samples=len(run.train),
        batch_size=run.batch_size,
        optimizer=run.optimizer_name,
    )
    started = time.perf_counter()
    for epoch in range(start, config.epochs + 1):
        if run.stopper.stopped:
            break
        epoch_started = time.perf_counter()
        metrics, seconds = _run_epoch(run, epoch, should_stop)
        history.append(metrics)
        result.train_seconds += seconds
        result.seconds = time.perf_counter() - started
        result.peak_memory_mb = _peak_memory_mb(device)
        run.stopper.update(epoch, metrics)
        if on_checkpoint is not None:
            state = state_dict(run, epoch, history, result.best)
            result.best = state["best"]
            on_checkpoint(epoch, state)
        # Speed and memory ride along with the metrics so that a pruned trial records them too.
        perf = {
            "samples_per_second": len(run.train) / seconds,
            "peak_memory_mb": result.peak_memory_mb,
            "epoch_seconds": time.perf_counter() - epoch_started,  # train and validation
        }
        on_epoch(epoch, {**metrics, **perf})
    result.stopped_early = run.stopper.stopped
    result.best_epoch, result.best_value = run.stopper.best_epoch, run.stopper.best_value
    return result
