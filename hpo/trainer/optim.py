"""Optimizer construction: the `auto` rule, parameter groups with layer decay, the optimizer.

Parameter groups: each stage of the model (stem ... head, see :func:`hpo.models.parts.stages`)
gets ``lr_scale``, the share of the head's LR it trains at; biases and normalisation weights
(1-d tensors) get no weight decay, as is common practice (they share their stage's group when
there is no weight decay at all). Neither the groups nor the optimizer hold a real LR: the
schedule (:mod:`hpo.trainer.schedule`) alone writes it, as ``peak * factor * lr_scale``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hpo.models import model_entry, stages
from hpo.trainer.config import TrainConfig

#: ``optimizer: auto`` picks AdamW below this many training samples (and for transformers).
AUTO_SMALL_DATA = 10_000
#: The LR an optimizer is built with. Torch optimizers require one, but the schedule writes every
#: group's LR before the first step; zero, so an optimizer no schedule drives (the batch-size
#: probe, which only measures memory) updates nothing rather than training at a plausible LR.
PLACEHOLDER_LR = 0.0


def resolve_optimizer(config: TrainConfig, train_samples: int) -> str:
    """The optimizer's name; ``auto`` is AdamW for ViT/ConvNeXt or small data, else SGD.

    Transformer-era models are trained with AdamW by convention, and on small data sets
    (fewer than 10,000 samples) AdamW converges with less LR tuning; SGD with momentum is the
    strong default for convolutional nets on larger data.
    """
    if config.optimizer != "auto":
        return config.optimizer
    if model_entry(config.model).transformer or train_samples < AUTO_SMALL_DATA:
        return "adamw"
    return "sgd"


def stage_scales(n_stages: int, decay: float, mode: str) -> list[float]:
    """LR multipliers of ``n_stages`` stages from the input to the head (the head gets 1)."""
    top = n_stages - 1
    if mode == "geometric":
        return [decay ** (top - i) for i in range(n_stages)]
    if mode == "linear":
        return [1 - (1 - decay) * (top - i) / max(1, top) for i in range(n_stages)]
    raise ValueError(f"unknown layer_decay_mode {mode!r}")


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """Optimizer parameter groups: one per (stage, with/without weight decay)."""
    named = dict(model.named_parameters())
    by_stage = stages(model, config.head) if config.layer_decay < 1 else [list(named)]
    scales = stage_scales(len(by_stage), config.layer_decay, config.layer_decay_mode)
    groups: list[dict[str, Any]] = []
    splits = config.weight_decay > 0  # without decay one group per stage: fewer kernel launches
    for depth, (names, scale) in enumerate(zip(by_stage, scales, strict=True)):
        decay = [named[n] for n in names if named[n].ndim > 1 or not splits]
        no_decay = [named[n] for n in names if named[n].ndim <= 1 and splits]
        for params, wd in ((decay, config.weight_decay), (no_decay, 0.0)):
            if params:
                groups.append(
                    {
                        "params": params,
                        "weight_decay": wd,
                        "lr_scale": scale,
                        "stage": depth,
                    }
                )
    return groups


def build_optimizer(
    config: TrainConfig, groups: list[dict[str, Any]], name: str | None = None
) -> torch.optim.Optimizer:
    """The optimizer ``name`` (default: ``config.optimizer``) over ``groups``, at
    :data:`PLACEHOLDER_LR` until a :class:`~hpo.trainer.schedule.Schedule` applies its LR."""
    name = name or config.optimizer
    lr = PLACEHOLDER_LR
    if name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, momentum=config.momentum)
    simple: dict[str, Any] = {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "nadam": torch.optim.NAdam,
        "radam": torch.optim.RAdam,
    }
    if name not in simple:
        raise ValueError(f"unknown optimizer {name!r}")
    return simple[name](groups, lr=lr)
