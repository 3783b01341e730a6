"""Transfer learning phases: feature extraction (backbone frozen), then fine-tuning.

Phase 1 (epochs 1..``freeze_epochs``) trains only the new head at ``lr``: the backbone's
parameters have ``requires_grad=False`` and its normalisation layers stay in eval mode, so the
pretrained features do not drift. Phase 2 unfreezes everything and trains at ``finetune_lr``
(default ``lr``) for the head, scaled per stage by the layer decay. Each phase runs its own
learning-rate schedule (warm-up included) from its peak down to ``peak * lrf``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hpo.trainer.config import TrainConfig

FROZEN, FULL = 1, 2


@dataclass(frozen=True)
class Phase:
    """One phase of a run: which, its first epoch, its length and its peak head LR."""

    index: int
    first_epoch: int
    epochs: int
    peak_lr: float


def phase_of(config: TrainConfig, epoch: int) -> Phase:
    """The phase that ``epoch`` (1-based) belongs to."""
    if epoch <= config.freeze_epochs:
        return Phase(FROZEN, 1, min(config.freeze_epochs, config.epochs), config.lr)
    first = config.freeze_epochs + 1
    peak = (config.finetune_lr or config.lr) if config.freeze_epochs else config.lr
    return Phase(FULL, first, config.epochs - config.freeze_epochs, peak)


def _in_head(name: str, head: str) -> bool:
    return name == head or name.startswith(head + ".")


def set_backbone_trainable(model: nn.Module, head: str, trainable: bool) -> None:
    """Freeze (or unfreeze) every parameter outside the head module ``head``."""
    for name, param in model.named_parameters():
        if not _in_head(name, head):
            param.requires_grad_(trainable)


def freeze_backbone_norms(model: nn.Module, head: str) -> None:
    """Put the backbone's batch-norm layers in eval mode (call after ``model.train()``)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not _in_head(name, head):
            module.eval()
