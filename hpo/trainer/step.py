"""One epoch of training and one of validation.

Metrics are summed on the device and read once per epoch: no host sync per step (except the
fp16 GradScaler's inf check). Gradient accumulation weights each micro-batch's mean loss by its
share of the optimizer step's samples, so N micro-batches give the gradient of one big batch
(1/N each when they are equal).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from hpo.errors import Interrupted
from hpo.trainer.batches import Batches
from hpo.trainer.distributed import Group
from hpo.trainer.precision import Precision
from hpo.trainer.schedule import Schedule
from hpo.trainer.transfer import freeze_backbone_norms


@dataclass
class TrainStep:
    """What an optimizer step needs: model, optimizer, precision, schedule and the knobs."""

    model: nn.Module  # what runs forward (maybe compiled)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    precision: Precision
    device: torch.device
    schedule: Schedule
    accumulate: int = 1
    clip_grad_norm: float | None = None
    label_smoothing: float = 0.0
    frozen_head: str | None = None  # feature extraction: keep backbone norms in eval mode
    module: nn.Module | None = None  # the uncompiled model (defaults to ``model``)
    params: list[nn.Parameter] = field(default_factory=list)
    group: Group | None = None  # data-parallel: ``model`` is DistributedDataParallel

    def __post_init__(self) -> None:
        if self.module is None:
            self.module = self.model
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]


def _group_sizes(samples: int, batch_size: int, accumulate: int) -> Callable[[int], int]:
    """Samples in the optimizer step that micro-batch ``i`` belongs to (the last may be short)."""
    per_step = batch_size * accumulate

    def size(i: int) -> int:
        first = (i // accumulate) * per_step
        return min(samples, first + per_step) - first

    return size


def train_one_epoch(
    step: TrainStep, batches: Batches, should_stop: Callable[[], bool] = lambda: False
) -> dict[str, float]:
    """One pass over the training batches; returns train loss, accuracy and the last LR.

    ``should_stop`` is polled before every batch (a host-side flag, no device sync) and raises
    :class:`Interrupted` so a preempted node stops within one batch.
    """
    step.model.train()
    if step.frozen_head is not None and step.module is not None:
        freeze_backbone_norms(step.module, step.frozen_head)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=step.label_smoothing)
    loss_sum = torch.zeros((), device=step.device)
    correct = torch.zeros((), device=step.device, dtype=torch.long)
    count, n_batches = 0, batches.num_batches
    group_size = _group_sizes(len(batches), batches.batch_size, step.accumulate)
    world = step.group.world if step.group is not None else 1
    step.optimizer.zero_grad(set_to_none=True)
    for i, (x, y) in enumerate(batches):
        if should_stop():
            raise Interrupted("stop requested during training")
        last = (i + 1) % step.accumulate == 0 or i == n_batches - 1
        with _sync(step, last):
            with step.precision.autocast(step.device):
                logits = step.model(x)
                loss = loss_fn(logits, y) if len(y) else logits.sum() * 0.0
            # DDP averages over the ranks: times N, each rank's share of the step's samples
            weight = len(y) * world / group_size(i)
            step.scaler.scale(loss if weight == 1.0 else loss * weight).backward()
        if last:
            _optimizer_step(step)
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        count += len(y)
    loss_total, correct_total, n = _summed(step.group, loss_sum, correct, count)
    return {
        "train_loss": loss_total / n,
        "train_accuracy": correct_total / n,
        "lr": step.schedule.last_lr,
    }


def _sync(step: TrainStep, last: bool) -> contextlib.AbstractContextManager[None]:
    """DDP's gradient all-reduce only on a step's last micro-batch (accumulate locally)."""
    if step.group is None or last:
        return contextlib.nullcontext()
    return step.model.no_sync()  # type: ignore[operator]


def _summed(
    group: Group | None, loss_sum: torch.Tensor, correct: torch.Tensor, count: int
) -> tuple[float, float, int]:
    """(loss sum, correct, samples) of the epoch over every rank; one host sync."""
    if group is None:
        return loss_sum.item(), float(correct.item()), count
    total = group.sum(loss_sum, correct, torch.tensor(count, device=loss_sum.device))
    return total[0].item(), total[1].item(), int(total[2].item())


def _optimizer_step(step: TrainStep) -> None:
    if step.clip_grad_norm is not None:
        step.scaler.unscale_(step.optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(step.params, step.clip_grad_norm)
    step.scaler.step(step.optimizer)
    step.scaler.update()
    step.optimizer.zero_grad(set_to_none=True)
    step.schedule.advance(step.optimizer)


@torch.no_grad()
def validate(
    model: nn.Module,
    batches: Batches,
    precision: Precision,
    device: torch.device,
    group: Group | None = None,
) -> dict[str, float]:
    """Loss and accuracy on the validation batches, without augmentation or gradients (each
    rank its share, summed over the ranks)."""
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
    loss_total, correct_total, n = _summed(group, loss_sum, correct, count)
    return {"val_loss": loss_total / n, "val_accuracy": correct_total / n}
