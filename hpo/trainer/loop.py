"""The training loop: ``fit`` runs epochs of ``train_one_epoch`` + ``validate``.

After each epoch ``on_epoch(epoch, metrics)`` is called; it may raise to stop the run (the
worker raises ``optuna.TrialPruned`` there), and the exception propagates to the caller.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from hpo.data import DataBundle, DataOptions, load_data
from hpo.errors import Interrupted, NonFiniteLossError
from hpo.models import MODELS, build_model
from hpo.trainer.batches import LoaderBatches, TensorBatches, make_batches, subset
from hpo.trainer.config import TrainConfig
from hpo.trainer.optim import build_optimizer
from hpo.trainer.precision import Precision, resolve_precision

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    """What a finished run measured: the per-epoch metrics and its speed and memory."""

    history: list[dict[str, float]] = field(default_factory=list)
    device_name: str = "cpu"
    train_samples: int = 0
    seconds: float = 0.0
    train_seconds: float = 0.0
    peak_memory_mb: float = 0.0

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


def data_options(config: TrainConfig, image_size: int | None) -> DataOptions:
    """The dataset builder's options for ``config`` (shared with the dispatcher's prepare step)."""
    return DataOptions(
        data_dir=config.data_dir,
        download=config.download,
        image_size=image_size,
        val_fraction=config.val_fraction,
        num_classes=config.num_classes,
        samples=config.fake_samples,
    )


def _load(config: TrainConfig) -> DataBundle:
    data = load_data(config.dataset, data_options(config, config.image_size))
    min_size = MODELS[config.model].min_size
    if data.image_size < min_size:  # upscale tiny images (8px digits) for models that need more
        data = load_data(config.dataset, data_options(config, min_size))
    return data


def train_one_epoch(
    model: nn.Module,
    batches: TensorBatches | LoaderBatches,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    precision: Precision,
    device: torch.device,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, float]:
    """One pass over the training batches; metrics are summed on the device, read once.

    ``should_stop`` is polled before every batch (a host-side flag, no device sync) and raises
    :class:`Interrupted` so a preempted node stops within one batch.
    """
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    for x, y in batches:
        if should_stop():
            raise Interrupted("stop requested during training")
        with precision.autocast(device):
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        count += len(y)
    return {"train_loss": loss_sum.item() / count, "train_accuracy": correct.item() / count}


@torch.no_grad()
def validate(
    model: nn.Module,
    batches: TensorBatches | LoaderBatches,
    precision: Precision,
    device: torch.device,
) -> dict[str, float]:
    """Loss and accuracy on the validation batches, without augmentation or gradients."""
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    for x, y in batches:
        with precision.autocast(device):
            logits = model(x)
        loss_sum += loss_fn(logits.float(), y)
        correct += (logits.argmax(1) == y).sum()
        count += len(y)
    return {"val_loss": loss_sum.item() / count, "val_accuracy": correct.item() / count}


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def fit(
    config: TrainConfig,
    device: torch.device,
    on_epoch: EpochCallback,
    should_stop: Callable[[], bool] = lambda: False,
) -> TrainResult:
    """Train ``config`` on ``device`` for ``config.epochs`` epochs, calling ``on_epoch`` after each.

    Raises:
        NonFiniteLossError: the training loss became NaN or infinite.
        Interrupted: ``should_stop()`` turned true.
    """
    torch.manual_seed(config.seed)
    data = _load(config)
    train_ds = subset(data.train, config.fraction, config.seed)
    kw = {"device": device, "seed": config.seed, "num_workers": config.num_workers}
    train = make_batches(train_ds, config.batch_size, shuffle=True, **kw)  # type: ignore[arg-type]
    val = make_batches(data.val, config.batch_size, shuffle=False, **kw)  # type: ignore[arg-type]
    model = build_model(config.model, data.num_classes, data.in_channels, data.image_size)
    model.to(device)
    optimizer = build_optimizer(config, model.parameters())
    precision = resolve_precision(config, device)
    scaler = precision.scaler(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = TrainResult(
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        train_samples=len(train),
    )
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        metrics = train_one_epoch(model, train, optimizer, scaler, precision, device, should_stop)
        epoch_seconds = time.perf_counter() - t0
        result.train_seconds += epoch_seconds
        if not math.isfinite(metrics["train_loss"]):
            raise NonFiniteLossError(epoch)
        metrics.update(validate(model, val, precision, device))
        result.history.append(metrics)
        result.seconds = time.perf_counter() - started
        result.peak_memory_mb = _peak_memory_mb(device)
        # Speed and memory ride along with the metrics so that a pruned trial records them too.
        perf = {
            "samples_per_second": len(train) / epoch_seconds,
            "peak_memory_mb": result.peak_memory_mb,
        }
        on_epoch(epoch, {**metrics, **perf})
    return result
